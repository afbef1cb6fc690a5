//! SQL for ClickHouse, unparsed from DataFusion plans. Every time is sent to ClickHouse as
//! milliseconds since the epoch (an integer): that is how the raw table stores it
//! (`timestamp_ms UInt64`), it works on every server version (18.16 has no `DateTime64`),
//! and it keeps comparisons on the primary key. So timestamp literals become integers, and
//! the date functions Sluice pushes down are written as integer arithmetic on milliseconds
//! or through ClickHouse's calendar functions in UTC. [`crate::pushdown`] only lets through
//! expressions this module writes correctly.

use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::datatypes::TimeUnit;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::{
    CharacterLengthStyle, DateFieldExtractStyle, Dialect, IntervalStyle,
};

/// DataFusion's unparser dialect for ClickHouse.
#[derive(Debug, Default)]
pub struct ClickHouseDialect;

const MS_PER_DAY: i64 = 86_400_000;

/// `e` (milliseconds) as a ClickHouse `DateTime` in UTC.
fn datetime(e: &str) -> String {
    format!("toDateTime(intDiv({e}, 1000), 'UTC')")
}

/// The SQL of `date_trunc(unit, e)` on milliseconds, giving milliseconds; `None` for a unit
/// ClickHouse cannot answer exactly in UTC (the pushdown rule then keeps it in the gateway).
pub(crate) fn date_trunc_sql(unit: &str, e: &str) -> Option<String> {
    let fixed = |ms: i64| Some(format!("(intDiv({e}, {ms}) * {ms})"));
    // A `Date` converts to its day number: midnight UTC is that times a day.
    let by_date = |f: &str| Some(format!("(toInt64({f}({})) * {MS_PER_DAY})", datetime(e)));
    match unit {
        "second" => fixed(1_000),
        "minute" => fixed(60_000),
        "hour" => fixed(3_600_000),
        "day" => fixed(MS_PER_DAY),
        "week" => by_date("toMonday"),
        "month" => by_date("toStartOfMonth"),
        "quarter" => by_date("toStartOfQuarter"),
        "year" => by_date("toStartOfYear"),
        _ => None,
    }
}

/// The SQL of `date_part(field, e)` on milliseconds; `None` for a field it does not write.
pub(crate) fn date_part_sql(field: &str, e: &str) -> Option<String> {
    let t = datetime(e);
    Some(match field {
        "year" => format!("toYear({t})"),
        "quarter" => format!("toQuarter({t})"),
        "month" => format!("toMonth({t})"),
        "day" => format!("toDayOfMonth({t})"),
        "hour" => format!("toHour({t})"),
        "minute" => format!("toMinute({t})"),
        "second" => format!("toSecond({t})"),
        // DataFusion counts Sunday as 0, ClickHouse Monday as 1 .. Sunday as 7.
        "dow" => format!("(toDayOfWeek({t}) % 7)"),
        "doy" => format!("toDayOfYear({t})"),
        _ => return None,
    })
}

/// The lower-case string literal of a unit or field argument.
pub(crate) fn unit_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.to_lowercase()),
        _ => None,
    }
}

/// A ClickHouse type by name, for `CAST(.. AS <name>)`.
fn type_named(name: &str) -> ast::DataType {
    ast::DataType::Custom(ast::ObjectName::from(vec![ast::Ident::new(name)]), vec![])
}

fn parse_expr(sql: &str) -> Result<ast::Expr> {
    Ok(Parser::new(&GenericDialect {})
        .try_with_sql(sql)?
        .parse_expr()?)
}

impl Dialect for ClickHouseDialect {
    fn identifier_quote_style(&self, _identifier: &str) -> Option<char> {
        Some('"')
    }

    fn supports_nulls_first_in_sort(&self) -> bool {
        true
    }

    fn use_timestamp_for_date64(&self) -> bool {
        false
    }

    fn interval_style(&self) -> IntervalStyle {
        IntervalStyle::SQLStandard
    }

    fn date_field_extract_style(&self) -> DateFieldExtractStyle {
        DateFieldExtractStyle::DatePart
    }

    fn character_length_style(&self) -> CharacterLengthStyle {
        CharacterLengthStyle::Length
    }

    fn float64_ast_dtype(&self) -> ast::DataType {
        type_named("Float64")
    }

    fn utf8_cast_dtype(&self) -> ast::DataType {
        type_named("String")
    }

    fn large_utf8_cast_dtype(&self) -> ast::DataType {
        self.utf8_cast_dtype()
    }

    fn int64_cast_dtype(&self) -> ast::DataType {
        type_named("Int64")
    }

    fn int32_cast_dtype(&self) -> ast::DataType {
        type_named("Int32")
    }

    fn int8_cast_dtype(&self) -> ast::DataType {
        type_named("Int8")
    }

    /// Timestamp literals are written `CAST('<ms>' AS Int64)`: see the module docs.
    fn timestamp_cast_dtype(&self, _time_unit: &TimeUnit, _tz: &Option<Arc<str>>) -> ast::DataType {
        self.int64_cast_dtype()
    }

    fn timestamp_with_tz_to_string(&self, dt: DateTime<Tz>, _unit: TimeUnit) -> String {
        dt.timestamp_millis().to_string()
    }

    fn requires_derived_table_alias(&self) -> bool {
        true
    }

    fn supports_column_alias_in_table_alias(&self) -> bool {
        false
    }

    fn supports_qualify(&self) -> bool {
        false
    }

    fn scalar_function_to_sql_overrides(
        &self,
        unparser: &Unparser,
        func_name: &str,
        args: &[Expr],
    ) -> Result<Option<ast::Expr>> {
        let sql = match (func_name, args) {
            ("date_trunc", [unit, e]) => {
                let (Some(unit), e) = (unit_literal(unit), unparser.expr_to_sql(e)?) else {
                    return plan_err!("ClickHouse: date_trunc needs a literal unit");
                };
                date_trunc_sql(&unit, &e.to_string())
            }
            ("date_part", [field, e]) => {
                let (Some(field), e) = (unit_literal(field), unparser.expr_to_sql(e)?) else {
                    return plan_err!("ClickHouse: date_part needs a literal field");
                };
                date_part_sql(&field, &e.to_string())
            }
            _ => return Ok(None),
        };
        match sql {
            Some(sql) => Ok(Some(parse_expr(&sql)?)),
            None => plan_err!("ClickHouse: {func_name} with these arguments is not pushed down"),
        }
    }
}
