//! The rollups ([`sluice_catalog::rollups`]) the planner may read, and when one answers an
//! aggregate over `streams` exactly: every time filter is a range with millisecond bounds,
//! other filters name only the rollup's keys, grouping uses `ts` only through functions
//! constant over a UTC day (`date_trunc` to a day or coarser, `date_part` of a day or
//! coarser), and the measures are ones the rollup keeps. The partial days at the range's
//! edges and the day of `W` are read raw.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator};
use sluice_catalog::{RollupDef, RollupGrain};
use sluice_connector_api::TimeRange;

use crate::partial_aggregate::Measure;
use crate::source_reads::CountedTable;
use crate::streams::ts_literal;
use crate::streams_input::{MS_PLAYED, TS, USER, columns_of, only_keys};

/// A rollup the planner may read, with the cold store's table for it.
#[derive(Debug, Clone)]
pub(crate) struct AvailableRollup {
    pub(crate) def: &'static RollupDef,
    pub(crate) table: Arc<dyn TableProvider>,
    /// Whether the table is read through federation (counted there) or by the gateway.
    pub(crate) federated: bool,
    pub(crate) source: String,
}

/// A function of `ts` constant over every UTC period of `grain` (a day or a calendar month),
/// so a rollup's period start gives the same value as each of the period's events.
fn period_constant(e: &Expr, grain: RollupGrain) -> bool {
    let Expr::ScalarFunction(f) = e else {
        return false;
    };
    let [
        Expr::Literal(ScalarValue::Utf8(Some(unit)) | ScalarValue::Utf8View(Some(unit)), _),
        Expr::Column(c),
    ] = f.args.as_slice()
    else {
        return false;
    };
    let unit = unit.to_ascii_lowercase();
    let (trunc, part): (&[&str], &[&str]) = match grain {
        RollupGrain::Day { .. } => (
            &["day", "week", "month", "quarter", "year"],
            &["year", "quarter", "month", "week", "day", "doy", "dow"],
        ),
        RollupGrain::Month { .. } => (&["month", "quarter", "year"], &["year", "quarter", "month"]),
        RollupGrain::AllTime => (&[], &[]),
    };
    c.name == TS
        && match f.func.name() {
            "date_trunc" => trunc.contains(&unit.as_str()),
            "date_part" | "datepart" => part.contains(&unit.as_str()),
            _ => false,
        }
}

/// True if `e` reads `ts` only through [`period_constant`] functions and no `ms_played`.
fn period_grain_expr(e: &Expr, grain: RollupGrain) -> bool {
    let mut ok = true;
    let _ = e.apply(|n| {
        if period_constant(n, grain) {
            return Ok(TreeNodeRecursion::Jump);
        }
        if let Expr::Column(c) = n
            && (c.name == TS || c.name == MS_PLAYED)
        {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

/// A timestamp literal in whole milliseconds.
fn exact_ms(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampMillisecond(Some(ms), _) => Some(*ms),
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1000),
        ScalarValue::TimestampMicrosecond(Some(us), _) if us % 1000 == 0 => Some(us / 1000),
        ScalarValue::TimestampNanosecond(Some(ns), _) if ns % 1_000_000 == 0 => {
            Some(ns / 1_000_000)
        }
        _ => None,
    }
}

fn is_ts(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TS)
}

/// True if the conjunct is exactly a bound on `ts` (what [`sluice_connector_api::EventFilter`] reads as a
/// range).
pub(crate) fn exact_time_bound(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq
            ) && ((is_ts(left) && exact_ms(right).is_some())
                || (is_ts(right) && exact_ms(left).is_some()))
        }
        Expr::Between(b) => {
            !b.negated
                && is_ts(&b.expr)
                && exact_ms(&b.low).is_some()
                && exact_ms(&b.high).is_some()
        }
        _ => false,
    }
}

/// What a rollup cannot answer in this aggregate, if anything.
pub(crate) fn rollup_misfit(
    def: &RollupDef,
    measures: &[Measure],
    groups: &[Expr],
    other_filters: &[Expr],
    exact_range: Option<TimeRange>,
    cold: TimeRange,
    w: i64,
) -> Option<String> {
    let Some(range) = exact_range else {
        return Some("a time filter is not a plain range of ts".into());
    };
    if let Some(f) = other_filters.iter().find(|f| !only_keys(f)) {
        return Some(format!("filter {f} needs raw events"));
    }
    if let Some(why) = measures.iter().find_map(|m| missing_measure(def, m)) {
        return Some(why);
    }
    match def.grain {
        RollupGrain::AllTime => {
            if groups
                .iter()
                .any(|g| columns_of(g).iter().any(|c| c != USER && c != "track_uri"))
            {
                return Some("the query groups by time".into());
            }
            if range.start_ms.is_some() || cold.end_ms != Some(w) {
                return Some("it covers only the whole history before W".into());
            }
        }
        RollupGrain::Day { .. } | RollupGrain::Month { .. } => {
            return period_misfit(def.grain, groups, cold, w);
        }
    }
    None
}

/// Why a rollup cannot give one of the measures it reads from its own columns, if it cannot.
pub(crate) fn missing_measure(def: &RollupDef, m: &Measure) -> Option<String> {
    let what = match m {
        Measure::MsPlayed if def.ms_played.is_none() => "sum(ms_played)",
        Measure::FirstTs if def.first_ts.is_none() => "min(ts)",
        Measure::LastTs if def.last_ts.is_none() => "max(ts)",
        _ => return None,
    };
    Some(format!("it does not keep {what}"))
}

/// What a rollup of days or months cannot answer: grouping by time finer than its grain, or
/// a range without one whole period.
pub(crate) fn period_misfit(
    grain: RollupGrain,
    groups: &[Expr],
    cold: TimeRange,
    w: i64,
) -> Option<String> {
    let period = match grain {
        RollupGrain::Month { .. } => "month",
        _ => "day",
    };
    if let Some(g) = groups.iter().find(|g| !period_grain_expr(g, grain)) {
        return Some(format!("grouping by {g} is finer than a {period}"));
    }
    if whole_periods(grain, cold, w).is_none() {
        return Some(format!("the range holds no whole {period} before W"));
    }
    None
}

/// The whole UTC periods of `grain` (days or calendar months) inside `cold` (a range before
/// `w`), if any; the whole range for a rollup without time.
pub(crate) fn whole_periods(grain: RollupGrain, cold: TimeRange, w: i64) -> Option<TimeRange> {
    if grain == RollupGrain::AllTime {
        return (!cold.is_empty()).then_some(cold);
    }
    let periods = TimeRange {
        start_ms: cold.start_ms.map(|s| grain.next_period_start(s)),
        end_ms: Some(grain.period_start(cold.end_ms.unwrap_or(w).min(w))),
    };
    (!periods.is_empty()).then_some(periods)
}

/// `column` within `range`, if the range has a bound.
pub(crate) fn range_filter(column: Expr, range: TimeRange) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(s) = range.start_ms {
        parts.push(column.clone().gt_eq(ts_literal(s)));
    }
    if let Some(e) = range.end_ms {
        parts.push(column.lt(ts_literal(e)));
    }
    conjunction(parts)
}

/// A measure read from a rollup's columns: the sum of its counts and times, the min or max
/// of its first and last times. `None` if the rollup does not keep it.
pub(crate) fn rollup_measure(def: &RollupDef, m: &Measure) -> Option<Expr> {
    let column = |name: Option<&str>| -> Option<Expr> {
        Some(Expr::Column(Column::new(
            Some(TableReference::bare(def.table)),
            name?,
        )))
    };
    Some(match m {
        Measure::Plays => sum(column(Some(def.plays))?),
        Measure::MsPlayed => sum(column(def.ms_played)?),
        Measure::FirstTs => min(column(def.first_ts)?),
        Measure::LastTs => max(column(def.last_ts)?),
        _ => return None,
    })
}

/// `e` with the columns of `from` (or unqualified ones) renamed into `to`.
pub(crate) fn rename_columns(
    e: Expr,
    from: &TableReference,
    to: &str,
    rename: impl Fn(&str) -> &str,
) -> Result<Expr> {
    let to = TableReference::bare(to);
    e.transform(|n| match n {
        Expr::Column(c) if c.relation.as_ref().is_none_or(|r| r == from) => Ok(Transformed::yes(
            Expr::Column(Column::new(Some(to.clone()), rename(&c.name))),
        )),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// A rollup's rows for `days` (or all of them), filtered like the query's events: `filters`
/// are the query's filters on keys, written in the rollup's columns.
pub(crate) fn rollup_piece(
    r: &AvailableRollup,
    days: TimeRange,
    mut filters: Vec<Expr>,
) -> Result<LogicalPlan> {
    let name = TableReference::bare(r.def.table);
    let table: Arc<dyn TableProvider> = if r.federated {
        Arc::clone(&r.table)
    } else {
        Arc::new(CountedTable::new(Arc::clone(&r.table), &r.source, "cold"))
    };
    if let Some(column) = r.def.grain.column()
        && let Some(f) = range_filter(Expr::Column(Column::new(Some(name.clone()), column)), days)
    {
        filters.push(f);
    }
    let mut builder = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?;
    if let Some(p) = conjunction(filters) {
        builder = builder.filter(p)?;
    }
    builder.build()
}
