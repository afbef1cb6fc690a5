//! Rewrites of the unparsed statement's AST, for SQL that DataFusion's unparser writes and
//! ClickHouse reads otherwise (or not at all). Run by the executor's AST analyzer on every
//! statement, after the dialect ([`crate::dialect`]) and before it is sent.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};

/// Every rewrite, in order.
pub(crate) fn rewrite(statement: &mut ast::Statement) {
    let _ = VisitMut::visit(statement, &mut NoEmptySelect);
    let _ = VisitMut::visit(statement, &mut OrderByAlias);
}

/// A plan that needs rows but no columns (`count(*)` over a filtered scan) unparses to
/// `SELECT FROM t`, which ClickHouse rejects: select a constant instead.
struct NoEmptySelect;

impl VisitorMut for NoEmptySelect {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        if let ast::SetExpr::Select(select) = query.body.as_mut()
            && select.projection.is_empty()
        {
            select
                .projection
                .push(ast::SelectItem::UnnamedExpr(ast::Expr::value(
                    ast::Value::Number("1".to_string(), false),
                )));
        }
        ControlFlow::Continue(())
    }
}

/// A sort on a column the projection renamed is unparsed qualified with the table, as in
/// `SELECT "streams"."timestamp_ms" AS "ts" .. ORDER BY "streams"."ts"`. 18.16 resolves
/// `streams.ts` to the alias; the analyzer of current releases (mandatory since 25.x) looks
/// for a column `ts` of `streams` and fails (Code 47). The alias alone means the same on
/// every version.
struct OrderByAlias;

impl VisitorMut for OrderByAlias {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        let ast::SetExpr::Select(select) = query.body.as_ref() else {
            return ControlFlow::Continue(());
        };
        let aliases: HashSet<String> = select
            .projection
            .iter()
            .filter_map(|item| match item {
                ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect();
        let Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(exprs),
            ..
        }) = query.order_by.as_mut()
        else {
            return ControlFlow::Continue(());
        };
        for order in exprs {
            if let ast::Expr::CompoundIdentifier(parts) = &order.expr
                && let Some(last) = parts.last()
                && aliases.contains(&last.value)
            {
                order.expr = ast::Expr::Identifier(last.clone());
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&GenericDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn statements_as_clickhouse_reads_them_on_every_version() {
        for (sent, written) in [
            // The golden `first_stream_before_2023`: a sort on a renamed column.
            (
                r#"SELECT "streams"."track_uri", "streams"."timestamp_ms" AS "ts" FROM "streams" ORDER BY "streams"."ts" ASC NULLS LAST LIMIT 1"#,
                r#"SELECT "streams"."track_uri", "streams"."timestamp_ms" AS "ts" FROM "streams" ORDER BY "ts" ASC NULLS LAST LIMIT 1"#,
            ),
            // A qualified column that is not an alias stays qualified.
            (
                r#"SELECT "s"."track_uri" FROM "streams" AS "s" ORDER BY "s"."timestamp_ms" DESC"#,
                r#"SELECT "s"."track_uri" FROM "streams" AS "s" ORDER BY "s"."timestamp_ms" DESC"#,
            ),
            // Inside a derived table too.
            (
                r#"SELECT "x"."n" FROM (SELECT count(1) AS "n", "t"."u" AS "k" FROM "t" GROUP BY "t"."u" ORDER BY "t"."k") AS "x""#,
                r#"SELECT "x"."n" FROM (SELECT count(1) AS "n", "t"."u" AS "k" FROM "t" GROUP BY "t"."u" ORDER BY "k") AS "x""#,
            ),
            // No columns: a constant.
            (
                r#"SELECT FROM "streams" WHERE "streams"."user_id" = 'u0002'"#,
                r#"SELECT 1 FROM "streams" WHERE "streams"."user_id" = 'u0002'"#,
            ),
        ] {
            assert_eq!(rewritten(sent), written, "for {sent}");
        }
    }
}
