//! Aggregates over `streams` computed in pieces: a partial aggregate per piece (a branch, the
//! raw cold events of a range, a rollup), then one final merge over their union. The pieces
//! name their outputs alike (keys `__sluice_k*`, measures `__sluice_m*`), whatever they read,
//! so any mix of them unions; [`Measure`] says how each of the query's aggregates merges.

use datafusion::common::{Result, TableReference};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{count_distinct, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, col, lit};

use crate::streams_input::{MS_PLAYED, TS, only_keys};

/// One aggregate of the query, as it merges.
#[derive(Debug, Clone)]
pub(crate) enum Measure {
    /// `count(*)` or `count(<non-null column>)`.
    Plays,
    /// `sum(ms_played)`.
    MsPlayed,
    /// `min(ts)`, `max(ts)`.
    FirstTs,
    LastTs,
    /// `min(e)` / `max(e)` of an expression of key columns.
    MinOf(Expr),
    MaxOf(Expr),
    /// `count(DISTINCT e)` of an expression of key columns.
    DistinctOf(Expr),
}

impl Measure {
    pub(crate) fn read(e: &Expr) -> Option<Self> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
            return None;
        };
        if params.filter.is_some() || !params.order_by.is_empty() || params.args.len() != 1 {
            return None;
        }
        let arg = &params.args[0];
        let name = func.name();
        let column = match arg {
            Expr::Column(c) => Some(c.name.as_str()),
            _ => None,
        };
        match (name, params.distinct) {
            ("count", true) if only_keys(arg) => Some(Measure::DistinctOf(arg.clone())),
            ("count", false) => match arg {
                // Every column of `streams` is non-null, so counting one counts rows.
                Expr::Literal(v, _) if !v.is_null() => Some(Measure::Plays),
                Expr::Column(_) => Some(Measure::Plays),
                _ => None,
            },
            ("sum", false) if column == Some(MS_PLAYED) => Some(Measure::MsPlayed),
            ("min", _) if column == Some(TS) => Some(Measure::FirstTs),
            ("max", _) if column == Some(TS) => Some(Measure::LastTs),
            ("min", _) if only_keys(arg) => Some(Measure::MinOf(arg.clone())),
            ("max", _) if only_keys(arg) => Some(Measure::MaxOf(arg.clone())),
            _ => None,
        }
    }
}

/// The one qualifier of the aggregate's keys (the final merge is a derived table of that
/// name), or `Some(None)` if none has one; `None` (leave the aggregate alone) for keys named
/// under two qualifiers, or twice.
pub(crate) fn keys_qualifier(agg: &Aggregate) -> Option<Option<TableReference>> {
    let mut qualifier: Option<TableReference> = None;
    let mut seen = std::collections::HashSet::new();
    for (q, f) in agg.schema.iter().take(agg.group_expr.len()) {
        if !seen.insert(f.name().clone()) || f.name().starts_with("__sluice_") {
            return None;
        }
        match (q, &qualifier) {
            (Some(q), Some(prev)) if q != prev => return None,
            (Some(q), None) => qualifier = Some(q.clone()),
            _ => {}
        }
    }
    Some(qualifier)
}

/// The final merge of the pieces' partial aggregates (see [`partial_aggregate`]), named as
/// `agg` was: keys keep their names under the qualifier the query uses for them (a derived
/// table of that name, so the SQL sent for a plan above this one can still say
/// `streams.track_uri`; the measures take that qualifier too, and are still found by their
/// names alone).
pub(crate) fn merge_pieces(
    agg: &Aggregate,
    pieces: Vec<LogicalPlan>,
    measures: &[Measure],
    qualifier: Option<TableReference>,
) -> Result<LogicalPlan> {
    let groups_len = agg.group_expr.len();
    let mut pieces = pieces.into_iter();
    let first = pieces.next().expect("at least one piece");
    let union = pieces
        .try_fold(LogicalPlanBuilder::from(first), |b, p| b.union(p))?
        .build()?;
    let merges = measures
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let c = col(format!("__sluice_m{i}"));
            let merged = match m {
                Measure::Plays => sum(c),
                Measure::MsPlayed => sum(c),
                Measure::FirstTs | Measure::MinOf(_) => min(c),
                Measure::LastTs | Measure::MaxOf(_) => max(c),
                Measure::DistinctOf(_) => count_distinct(c),
            };
            merged.alias(format!("__sluice_f{i}"))
        })
        .collect::<Vec<_>>();
    let keys = agg
        .schema
        .iter()
        .take(groups_len)
        .enumerate()
        .map(|(i, (_, f))| col(format!("__sluice_k{i}")).alias(f.name()))
        .collect::<Vec<_>>();
    let merged = LogicalPlanBuilder::from(union)
        .aggregate(keys, merges)?
        .build()?;
    let outputs = merged.schema().columns();
    let named = outputs
        .into_iter()
        .zip(std::iter::repeat_n(None, groups_len).chain(measures.iter().map(Some)))
        .map(|(c, m)| match m {
            // A count over no rows is 0, not NULL.
            Some(Measure::Plays) => coalesce(vec![Expr::Column(c), lit(0i64)]),
            _ => Expr::Column(c),
        })
        .zip(agg.schema.iter())
        .map(|(e, (q, f))| match &qualifier {
            Some(_) => e.alias(f.name()),
            None => e.alias_qualified(q.cloned(), f.name()),
        })
        .collect::<Vec<_>>();
    let mut named = LogicalPlanBuilder::from(merged).project(named)?;
    if let Some(q) = qualifier {
        // Last, so that the SQL sent for a plan above (a join on `s.track_uri`) finds the
        // name: an alias inside a projection does not carry its table's name there.
        named = named.alias(q)?;
    }
    named.build()
}

/// What a piece's partial aggregate computes for one measure.
pub(crate) enum Part {
    /// An aggregate the final merge combines (see [`merge_pieces`]).
    Agg(Expr),
    /// A `count(DISTINCT e)`'s `e`, kept as a key; the final merge counts its values.
    Key(Expr),
}

/// The partial aggregate of `plan` by `keys`, with one part per measure, as the final merge
/// reads it: keys `__sluice_k0..`, then `__sluice_m0..` in measure order (a distinct key in its
/// measure's place).
pub(crate) fn partial_aggregate(
    plan: LogicalPlan,
    mut keys: Vec<Expr>,
    parts: Vec<Part>,
) -> Result<LogicalPlan> {
    let groups = keys.len();
    let measures = parts.len();
    // Keys are grouped on as they are and renamed by the projection that follows (by
    // position): an alias inside GROUP BY makes the SQL unparser reorder the columns.
    let mut key_names: Vec<String> = (0..groups).map(|i| format!("__sluice_k{i}")).collect();
    let mut aggs = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let name = format!("__sluice_m{i}");
        match part {
            Part::Agg(e) => {
                aggs.push(e.alias(&name));
                columns.push(name);
            }
            Part::Key(e) => {
                keys.push(e);
                key_names.push(name);
            }
        }
    }
    let grouped = LogicalPlanBuilder::from(plan)
        .aggregate(keys, aggs)?
        .build()?;
    let outputs = grouped.schema().columns();
    let (key_cols, agg_cols) = outputs.split_at(key_names.len());
    let mut named: Vec<(String, Expr)> = key_names
        .into_iter()
        .zip(key_cols.iter().cloned().map(Expr::Column))
        .chain(
            columns
                .into_iter()
                .zip(agg_cols.iter().cloned().map(Expr::Column)),
        )
        .collect();
    let order = (0..groups)
        .map(|i| format!("__sluice_k{i}"))
        .chain((0..measures).map(|i| format!("__sluice_m{i}")));
    let mut exprs: Vec<Expr> = Vec::with_capacity(named.len());
    for name in order {
        let at = named
            .iter()
            .position(|(n, _)| *n == name)
            .expect("every key and measure is named");
        let (n, e) = named.remove(at);
        exprs.push(e.alias(n));
    }
    LogicalPlanBuilder::from(grouped).project(exprs)?.build()
}
