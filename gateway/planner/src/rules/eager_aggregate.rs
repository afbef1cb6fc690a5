//! Aggregates over `streams` joined with the catalog ("my top artist in 2019": plays per
//! artist name, through tracks and artists) are computed in two steps: a partial aggregate
//! of `streams` by its own keys (`track_uri`, `user_id`) and by the grouping expressions of
//! `ts`, below the joins, then the query's aggregate over the joined partial rows. Only one
//! row per track and group moves from the sources and through the joins, instead of one per
//! play; the partial is then split per source, and read from a rollup where one covers it
//! ([`super::aggregate_split`]).
//!
//! It is for one listener's reads, whose rows come to the gateway to meet the catalog there;
//! a read across listeners is joined in ClickHouse ([`super::catalog_join_placement`]) and left
//! alone.
//!
//! [`EagerAggregateRule`] takes an aggregate whose input reaches one read of `streams`
//! through inner joins (or outer, semi and anti joins that keep `streams`' rows), filters,
//! and projections of plain columns, where `ts` and `ms_played` are used only by the
//! aggregate. Its measures
//! must merge exactly: `count(*)` (the partial counts, summed), `sum(ms_played)`,
//! `min`/`max` of `ts`; aggregates that ignore duplicates (`min`, `max`, `DISTINCT`) of
//! other columns are kept as they are. Anything else is left alone.

use std::collections::HashSet;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, lit};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::federation::one_listener;
use crate::rewrite::rewrite_nodes;
use crate::route::QueryScopeOption;
use crate::settings::RouteMode;
use crate::streams_input::streams_input;

/// Pushes a partial aggregate of `streams` below the joins above it.
#[derive(Debug, Default)]
pub(crate) struct EagerAggregateRule;

/// How one of the query's aggregates is computed from the partial rows.
enum Merge {
    /// `count(*)`: the partial counts, summed (0 over no rows).
    Count,
    /// `sum`, `min` or `max` of a partial of the same name.
    Sum,
    Min,
    Max,
    /// Unchanged: it ignores how many times a row repeats.
    Keep,
}

/// The read of `streams` the aggregate reaches, with its columns by role.
struct Leaf {
    /// The read itself: the scan of `streams` under its filters, projections and aliases.
    plan: LogicalPlan,
    /// Columns kept as keys of the partial (`user_id`, `track_uri` under the query's names).
    keys: Vec<Column>,
    /// Columns only the aggregate may use (`ts`, `ms_played`, anything computed).
    measures: HashSet<Column>,
}

fn leaf_of(plan: &LogicalPlan) -> Option<Leaf> {
    let input = streams_input(plan)?;
    if !one_listener(plan) {
        // Across listeners the whole plan runs in ClickHouse (the catalog joins go there
        // too), which joins and groups the raw rows in one pass; a partial below the join
        // only added a level there (3x slower for plays per genre in a year, measured).
        return None;
    }
    let mut keys = Vec::new();
    let mut measures = HashSet::new();
    for c in plan.schema().columns() {
        let below = input
            .columns
            .get(&c.flat_name())
            .cloned()
            .unwrap_or_else(|| Expr::Column(c.clone()));
        match below {
            Expr::Column(b) if b.name == "user_id" || b.name == "track_uri" => keys.push(c),
            _ => {
                measures.insert(c);
            }
        }
    }
    Some(Leaf {
        plan: plan.clone(),
        keys,
        measures,
    })
}

fn reads_streams(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|n| {
        if let LogicalPlan::TableScan(s) = n
            && crate::streams::streams_branches(s).is_some()
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn columns_in(e: &Expr) -> Vec<Column> {
    e.column_refs().into_iter().cloned().collect()
}

/// The path from the aggregate's input down to the leaf: every node on it is a join (with
/// the leaf on a side whose rows it keeps), a filter or a projection of plain columns, and
/// none of them reads the leaf's measure columns.
fn find_leaf(plan: &LogicalPlan, joins: &mut usize) -> Option<Leaf> {
    if let Some(leaf) = leaf_of(plan) {
        return Some(leaf);
    }
    let leaf = match plan {
        LogicalPlan::Join(j) => {
            let (l, r) = (reads_streams(&j.left), reads_streams(&j.right));
            let side = match (l, r, j.join_type) {
                (
                    true,
                    false,
                    JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti,
                ) => &j.left,
                (false, true, JoinType::Inner | JoinType::Right) => &j.right,
                _ => return None,
            };
            *joins += 1;
            find_leaf(side, joins)?
        }
        LogicalPlan::Filter(f) => find_leaf(&f.input, joins)?,
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            find_leaf(&p.input, joins)?
        }
        _ => return None,
    };
    // A projection passes measure columns up to the aggregate; nothing else may read them.
    let reads_measure = !matches!(plan, LogicalPlan::Projection(_))
        && plan
            .expressions()
            .iter()
            .flat_map(columns_in)
            .any(|c| leaf.measures.contains(&c));
    (!reads_measure).then_some(leaf)
}

/// `plan` with the leaf replaced by `partial`: projections on the way pass the partial's
/// new columns up and drop the leaf's measure columns.
fn replace_leaf(
    plan: &LogicalPlan,
    partial: &LogicalPlan,
    leaf: &Leaf,
    added: &[Column],
) -> Result<LogicalPlan> {
    if *plan == leaf.plan {
        return Ok(partial.clone());
    }
    let inputs = plan
        .inputs()
        .into_iter()
        .map(|i| {
            if reads_streams(i) {
                replace_leaf(i, partial, leaf, added)
            } else {
                Ok(i.clone())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let exprs = match plan {
        LogicalPlan::Projection(p) => p
            .expr
            .iter()
            .filter(|e| !columns_in(e).iter().any(|c| leaf.measures.contains(c)))
            .cloned()
            .chain(added.iter().cloned().map(Expr::Column))
            .collect(),
        other => other.expressions(),
    };
    plan.with_new_exprs(exprs, inputs)
}

impl EagerAggregateRule {
    fn push(&self, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        if agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return Ok(None);
        }
        let mut joins = 0;
        let Some(leaf) = find_leaf(&agg.input, &mut joins) else {
            return Ok(None);
        };
        if joins == 0 {
            // No join to shrink: the aggregate is split as it is.
            return Ok(None);
        }
        let on_leaf = |e: &Expr| columns_in(e).iter().any(|c| leaf.measures.contains(c));
        let all_leaf = |e: &Expr| {
            columns_in(e)
                .iter()
                .all(|c| leaf.measures.contains(c) || leaf.keys.contains(c))
        };

        // The partial's keys: the leaf's keys, then each grouping expression of `ts`.
        let mut partial_keys: Vec<Expr> = leaf.keys.iter().cloned().map(Expr::Column).collect();
        let mut top_groups = Vec::with_capacity(agg.group_expr.len());
        for (i, g) in agg.group_expr.iter().enumerate() {
            let g = g.clone().unalias();
            if on_leaf(&g) {
                if !all_leaf(&g) {
                    return Ok(None);
                }
                let name = format!("sluice_eager_g{i}");
                partial_keys.push(g.alias(&name));
                top_groups.push(Expr::Column(Column::from_name(name)));
            } else {
                top_groups.push(g);
            }
        }
        // The partial's measures and how each aggregate merges them.
        let mut partial_aggs = Vec::new();
        let mut merges = Vec::with_capacity(agg.aggr_expr.len());
        for (i, a) in agg.aggr_expr.iter().enumerate() {
            let a = a.clone().unalias();
            let Expr::AggregateFunction(AggregateFunction { func, params }) = &a else {
                return Ok(None);
            };
            if params.filter.is_some() || !params.order_by.is_empty() {
                return Ok(None);
            }
            let arg = params.args.first();
            let leaf_column = |e: Option<&Expr>| match e {
                Some(Expr::Column(c)) => leaf.measures.contains(c) || leaf.keys.contains(c),
                _ => false,
            };
            // Only a measure column is summed: a sum of a key would be multiplied by the
            // rows the partial folds.
            let measure_column =
                |e: Option<&Expr>| matches!(e, Some(Expr::Column(c)) if leaf.measures.contains(c));
            let name = format!("sluice_eager_m{i}");
            let dup_free = params.distinct || matches!(func.name(), "min" | "max");
            let (partial, merge) = match (func.name(), params.args.len()) {
                _ if dup_free && !on_leaf(&a) => (None, Merge::Keep),
                ("count", 1) if !params.distinct => match arg {
                    Some(Expr::Literal(v, _)) if !v.is_null() => {
                        (Some(count(lit(1i64))), Merge::Count)
                    }
                    // Every column of `streams` is non-null.
                    _ if leaf_column(arg) => (Some(count(lit(1i64))), Merge::Count),
                    _ => return Ok(None),
                },
                ("sum", 1) if !params.distinct && measure_column(arg) => {
                    (Some(sum(arg.cloned().expect("one argument"))), Merge::Sum)
                }
                ("min", 1) if leaf_column(arg) => {
                    (Some(min(arg.cloned().expect("one argument"))), Merge::Min)
                }
                ("max", 1) if leaf_column(arg) => {
                    (Some(max(arg.cloned().expect("one argument"))), Merge::Max)
                }
                _ => return Ok(None),
            };
            if let Some(p) = partial {
                partial_aggs.push(p.alias(&name));
            }
            merges.push((merge, name, a));
        }

        let partial = LogicalPlanBuilder::from(leaf.plan.clone())
            .aggregate(partial_keys, partial_aggs)?
            .build()?;
        let added = partial
            .schema()
            .columns()
            .into_iter()
            .filter(|c| c.name.starts_with("sluice_eager_"))
            .collect::<Vec<_>>();
        let input = replace_leaf(&agg.input, &partial, &leaf, &added)?;
        let top_aggs = merges
            .iter()
            .map(|(merge, name, a)| {
                let c = Expr::Column(Column::from_name(name));
                match merge {
                    Merge::Count | Merge::Sum => sum(c),
                    Merge::Min => min(c),
                    Merge::Max => max(c),
                    Merge::Keep => a.clone(),
                }
            })
            .collect::<Vec<_>>();
        let top = LogicalPlanBuilder::from(input)
            .aggregate(top_groups, top_aggs)?
            .build()?;
        // Named as the query's aggregate named its outputs.
        let kinds = std::iter::repeat_n(None, agg.group_expr.len())
            .chain(merges.iter().map(|(m, _, _)| Some(m)));
        let named = top
            .schema()
            .columns()
            .into_iter()
            .zip(kinds)
            .zip(agg.schema.iter())
            .map(|((c, kind), (q, f))| {
                let e = match kind {
                    Some(Merge::Count) => coalesce(vec![Expr::Column(c), lit(0i64)]),
                    _ => Expr::Column(c),
                };
                e.alias_qualified(q.cloned(), f.name())
            })
            .collect::<Vec<_>>();
        Ok(Some(LogicalPlanBuilder::from(top).project(named)?.build()?))
    }
}

impl OptimizerRule for EagerAggregateRule {
    fn name(&self) -> &str {
        "sluice_eager_aggregate"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // The raw route reads raw events with the plan as written: the baseline auto is
        // measured against.
        if QueryScopeOption::of(config).is_none_or(|s| s.route == RouteMode::Raw) {
            return Ok(Transformed::no(plan));
        }
        rewrite_nodes(plan, |node| match node {
            LogicalPlan::Aggregate(agg) => self.push(agg),
            _ => Ok(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{listener, logical};
    use crate::tests::{analyst, rollups};

    const RULE: &str = "sluice_eager_aggregate";
    const SQL: &str = "SELECT t.artist_uri, count(*) AS n FROM streams s \
                       JOIN tracks t ON s.track_uri = t.track_uri GROUP BY t.artist_uri";

    #[tokio::test]
    async fn a_listeners_plays_are_counted_per_track_below_the_join() {
        let plan = logical(&rollups::engine(), &listener("a"), SQL, RULE).await;
        let lines: Vec<&str> = plan.after.lines().collect();
        let join = lines.iter().position(|l| l.contains("Inner Join"));
        let partial = lines
            .iter()
            .position(|l| l.contains("Aggregate:") && l.contains("AS sluice_eager_m0"));
        assert!(
            matches!((join, partial), (Some(j), Some(p)) if p > j),
            "{plan}"
        );
        assert!(plan.after.contains("sum(sluice_eager_m0)"), "{plan}");
        assert!(!plan.before.contains("sluice_eager"), "{plan}");
    }

    #[tokio::test]
    async fn a_read_across_listeners_is_left_to_the_remote_join() {
        let plan = logical(&rollups::engine(), &analyst(), SQL, RULE).await;
        assert_eq!(plan.before, plan.after);
    }
}
