//! A listener's statement, sent straight to its shard. On a sharded cluster every event and
//! rollup row of a listener lives on one shard (`Distributed` tables shard by `user_id`), and
//! the catalog is whole on each. A statement whose every read of a sharded table is filtered
//! to one listener can then run on that shard alone, over its `<name>_local` tables, instead
//! of through the `Distributed` tables on every shard: the same rows, one server.
//!
//! 18.16 has no `optimize_skip_unused_shards`, so the gateway does the skipping itself. Any
//! statement it cannot prove is one listener's (an analyst's, a read without the filter, a
//! filter under `OR`) goes through the `Distributed` tables unchanged.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Location;

use crate::schema::local_name;

/// A statement that reads one listener's rows only.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ListenerStatement {
    pub user_id: String,
    /// The statement over the shard's own tables (`"streams_local" AS "streams"`).
    pub sql: String,
}

/// `sql` rewritten for the shard of the one listener it reads, if it reads only one
/// listener's rows of the `sharded` tables; `None` when it must read every shard.
pub(crate) fn listener_statement(
    sql: &str,
    sharded: &HashSet<String>,
) -> Option<ListenerStatement> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    let [statement] = statements.as_slice() else {
        return None;
    };
    let mut reads = Reads {
        sharded,
        relations: 0,
        filtered: 0,
        users: HashSet::new(),
        unfiltered: false,
    };
    let _ = Visit::visit(statement, &mut reads);
    if reads.unfiltered || reads.filtered == 0 || reads.filtered != reads.relations {
        return None;
    }
    let mut users = reads.users.into_iter();
    let (Some(user_id), None) = (users.next(), users.next()) else {
        return None;
    };
    // The original text with only the table names changed: printing the parsed statement
    // again would change what ClickHouse reads (`Int64` becomes `INT64`).
    let mut renames = ToLocal {
        sharded,
        edits: Vec::new(),
    };
    let _ = Visit::visit(statement, &mut renames);
    let mut sql = sql.to_string();
    let mut edits = renames.edits;
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    for (start, end, text) in edits {
        let (start, end) = (offset(&sql, start)?, offset(&sql, end)?);
        sql.replace_range(start..end, &text);
    }
    Some(ListenerStatement { user_id, sql })
}

/// Counts the reads of sharded tables, and those filtered to one listener in their SELECT.
struct Reads<'a> {
    sharded: &'a HashSet<String>,
    /// Every name of a sharded table in the statement (wherever it stands).
    relations: usize,
    /// Those read in a SELECT's FROM with a `user_id = '...'` conjunct for them.
    filtered: usize,
    users: HashSet<String>,
    /// A read in a FROM without that filter.
    unfiltered: bool,
}

impl Visitor for Reads<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ast::ObjectName) -> ControlFlow<()> {
        if sharded_name(relation, self.sharded).is_some() {
            self.relations += 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        self.set_expr(&query.body);
        ControlFlow::Continue(())
    }
}

impl Reads<'_> {
    fn set_expr(&mut self, body: &ast::SetExpr) {
        match body {
            ast::SetExpr::Select(select) => self.select(select),
            ast::SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            // Queries are visited on their own; nothing else reads a table.
            _ => {}
        }
    }

    fn select(&mut self, select: &ast::Select) {
        // The sharded tables this SELECT reads, by the name its columns are qualified with.
        let qualifiers: Vec<String> = select
            .from
            .iter()
            .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
            .filter_map(|factor| match factor {
                ast::TableFactor::Table {
                    name, alias, args, ..
                } if args.is_none() => {
                    let table = sharded_name(name, self.sharded)?;
                    Some(alias.as_ref().map_or(table, |a| a.name.value.clone()))
                }
                _ => None,
            })
            .collect();
        if qualifiers.is_empty() {
            return;
        }
        let mut filters = Vec::new();
        if let Some(selection) = &select.selection {
            listener_filters(selection, &mut filters);
        }
        for qualifier in &qualifiers {
            let user = filters.iter().find_map(|(q, user)| match q {
                Some(q) if q == qualifier => Some(user),
                // An unqualified `user_id` is the one sharded table's (the catalog has none).
                None if qualifiers.len() == 1 => Some(user),
                _ => None,
            });
            match user {
                Some(user) => {
                    self.filtered += 1;
                    self.users.insert(user.clone());
                }
                None => self.unfiltered = true,
            }
        }
    }
}

/// The `[qualifier.]user_id = 'value'` conjuncts at the top of a WHERE.
fn listener_filters(expr: &ast::Expr, out: &mut Vec<(Option<String>, String)>) {
    match expr {
        ast::Expr::Nested(inner) => listener_filters(inner, out),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            listener_filters(left, out);
            listener_filters(right, out);
        }
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq,
            right,
        } => {
            let found = user_column(left)
                .zip(string_value(right))
                .or_else(|| user_column(right).zip(string_value(left)));
            if let Some((qualifier, value)) = found {
                out.push((qualifier, value));
            }
        }
        _ => {}
    }
}

/// `Some(qualifier)` if `expr` is the `user_id` column (qualified or not).
fn user_column(expr: &ast::Expr) -> Option<Option<String>> {
    match expr {
        ast::Expr::Nested(inner) => user_column(inner),
        ast::Expr::Identifier(id) if id.value == "user_id" => Some(None),
        ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [.., table, column] if column.value == "user_id" => Some(Some(table.value.clone())),
            _ => None,
        },
        _ => None,
    }
}

fn string_value(expr: &ast::Expr) -> Option<String> {
    match expr {
        ast::Expr::Nested(inner) => string_value(inner),
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The sharded table `name` stands for, if any.
fn sharded_name(name: &ast::ObjectName, sharded: &HashSet<String>) -> Option<String> {
    let [part] = name.0.as_slice() else {
        return None;
    };
    let ident = part.as_ident()?;
    sharded.contains(&ident.value).then(|| ident.value.clone())
}

/// The edits that rename each sharded table to its shard's part, aliased to the old name so
/// that the columns qualified with it still resolve: (from, to, new text).
struct ToLocal<'a> {
    sharded: &'a HashSet<String>,
    edits: Vec<(Location, Location, String)>,
}

impl Visitor for ToLocal<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &ast::TableFactor) -> ControlFlow<()> {
        if let ast::TableFactor::Table { name, alias, .. } = factor
            && let Some(table) = sharded_name(name, self.sharded)
            && let Some(ident) = name.0[0].as_ident()
        {
            let quoted = |value: &str| match ident.quote_style {
                Some(q) => format!("{q}{value}{q}"),
                None => value.to_string(),
            };
            let mut text = quoted(&local_name(&table));
            if alias.is_none() {
                text = format!("{text} AS {}", quoted(&table));
            }
            self.edits.push((ident.span.start, ident.span.end, text));
        }
        ControlFlow::Continue(())
    }
}

/// The byte offset of a parser location (line and column from one, in characters).
fn offset(sql: &str, at: Location) -> Option<usize> {
    let line_start = if at.line <= 1 {
        0
    } else {
        sql.match_indices('\n')
            .nth(usize::try_from(at.line).ok()? - 2)?
            .0
            + 1
    };
    let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
    let rest = &sql[line_start..];
    Some(
        line_start
            + rest
                .char_indices()
                .nth(column)
                .map_or(rest.len(), |(i, _)| i),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharded() -> HashSet<String> {
        ["streams", "plays_daily", "track_first_last"]
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// What goes straight to a listener's shard, and what must read every shard.
    #[test]
    fn statements_of_one_listener_go_to_its_shard() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            // The golden `first_stream_ever`: a filter in the SELECT that reads `streams`.
            (
                r#"SELECT "streams"."track_uri" FROM (SELECT "streams"."track_uri", "streams"."timestamp_ms" FROM "streams" WHERE (("streams"."user_id" = 'u0002') AND ("streams"."timestamp_ms" < CAST(5 AS Int64))) ORDER BY "streams"."timestamp_ms" ASC NULLS LAST LIMIT 1) AS "streams""#,
                Some((
                    "u0002",
                    r#"SELECT "streams"."track_uri" FROM (SELECT "streams"."track_uri", "streams"."timestamp_ms" FROM "streams_local" AS "streams" WHERE (("streams"."user_id" = 'u0002') AND ("streams"."timestamp_ms" < CAST(5 AS Int64))) ORDER BY "streams"."timestamp_ms" ASC NULLS LAST LIMIT 1) AS "streams""#,
                )),
            ),
            // A join with the catalog (whole on every shard), with an alias, value first.
            (
                r#"SELECT t.track_name, count(*) FROM streams AS s JOIN tracks AS t ON s.track_uri = t.track_uri WHERE 'u0001' = s.user_id GROUP BY t.track_name"#,
                Some((
                    "u0001",
                    r#"SELECT t.track_name, count(*) FROM streams_local AS s JOIN tracks AS t ON s.track_uri = t.track_uri WHERE 'u0001' = s.user_id GROUP BY t.track_name"#,
                )),
            ),
            // Two sharded tables, each filtered to the same listener.
            (
                r#"SELECT 1 FROM plays_daily WHERE user_id = 'u0003' UNION ALL SELECT 1 FROM track_first_last WHERE user_id = 'u0003'"#,
                Some((
                    "u0003",
                    r#"SELECT 1 FROM plays_daily_local AS plays_daily WHERE user_id = 'u0003' UNION ALL SELECT 1 FROM track_first_last_local AS track_first_last WHERE user_id = 'u0003'"#,
                )),
            ),
            // Over several lines, text beside the names kept as it was (`Int64`, not `INT64`).
            (
                "SELECT CAST(count(*) AS Int64)\nFROM streams\nWHERE user_id = 'u0004'",
                Some((
                    "u0004",
                    "SELECT CAST(count(*) AS Int64)\nFROM streams_local AS streams\nWHERE user_id = 'u0004'",
                )),
            ),
            // An analyst: no listener filter.
            (
                r#"SELECT count(*) FROM "streams" WHERE "streams"."timestamp_ms" > 5"#,
                None,
            ),
            // Under OR the filter does not hold for every row.
            (
                r#"SELECT count(*) FROM streams WHERE user_id = 'u0001' OR ms_played > 5"#,
                None,
            ),
            // Two listeners live on different shards.
            (
                r#"SELECT 1 FROM plays_daily WHERE user_id = 'u0001' UNION ALL SELECT 1 FROM track_first_last WHERE user_id = 'u0002'"#,
                None,
            ),
            // One of two sharded reads is unfiltered.
            (
                r#"SELECT 1 FROM streams AS a JOIN plays_daily AS b ON a.track_uri = b.track_uri WHERE a.user_id = 'u0001'"#,
                None,
            ),
            // The filter names another table's column.
            (
                r#"SELECT 1 FROM streams AS a JOIN tracks AS t ON a.track_uri = t.track_uri WHERE t.user_id = 'u0001'"#,
                None,
            ),
            // A sharded table read where no SELECT filters it (an IN subquery's table).
            (
                r#"SELECT 1 FROM tracks WHERE track_uri IN (SELECT track_uri FROM streams)"#,
                None,
            ),
            // The catalog alone: nothing sharded.
            (r#"SELECT count(*) FROM tracks"#, None),
            // Not SQL this parser reads: every shard.
            (r#"SELECT FROM WHERE"#, None),
        ];
        for (sql, want) in cases {
            let got = listener_statement(sql, &sharded());
            let want = want.map(|(user, sql)| ListenerStatement {
                user_id: user.to_string(),
                sql: sql.to_string(),
            });
            assert_eq!(got, want, "{sql}");
        }
    }
}
