//! Aggregates over `streams`, split by where their rows live: a partial aggregate per piece
//! (the hot branch, the raw cold events, and a rollup for the part of the cold range it
//! covers exactly), one final merge over their union ([`crate::partial_aggregate`]). Each
//! partial runs where its rows are (ClickHouse gets it as SQL through federation), so only
//! per-group rows move, and a rollup answers whole days (or the whole history) instead of its
//! raw events.
//!
//! The rewrite ([`AggregateSplitRule`]) takes an aggregate whose input is filters and
//! projections over one scan of `streams`, with aggregates that merge exactly:
//! `count(*)`, `sum(ms_played)`, `min`/`max` of `ts` or of a key column, and
//! `count(DISTINCT <key>)` (the key is kept in the partials' groups, so nothing is
//! approximated). Anything else is left to the split of `streams` whole
//! ([`super::streams_split`]). Where a rollup answers exactly is [`crate::rollups`]'s to say.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, TableReference};
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, TableScanBuilder, lit};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use sluice_connector_api::{EventFilter, TimeRange};

use crate::partial_aggregate::{Measure, Part, keys_qualifier, merge_pieces, partial_aggregate};
use crate::rewrite::rewrite_nodes;
use crate::rollups::{
    AvailableRollup, exact_time_bound, range_filter, rename_columns, rollup_measure, rollup_misfit,
    rollup_piece, whole_periods,
};
use crate::route::{QueryScope, QueryScopeOption, RollupChoice, Route, RouteBranch};
use crate::settings::{Freshness, RouteMode};
use crate::streams::branch_plan;
use crate::streams_input::{MS_PLAYED, TS, columns_of, streams_input};

/// Splits aggregates over `streams` into per-piece partials, using rollups where exact.
#[derive(Debug)]
pub(crate) struct AggregateSplitRule {
    rollups: Vec<AvailableRollup>,
}

impl AggregateSplitRule {
    pub(crate) fn new(rollups: Vec<AvailableRollup>) -> Self {
        Self { rollups }
    }
}

impl AggregateSplitRule {
    fn split(&self, scope: &QueryScope, agg: &Aggregate) -> Result<Option<LogicalPlan>> {
        let Some(input) = streams_input(&agg.input) else {
            return Ok(None);
        };
        let resolve = |e: &Expr| -> Result<Expr> {
            if input.columns.is_empty() {
                Ok(e.clone())
            } else {
                replace_cols_by_name(e.clone(), &input.columns)
            }
        };
        if agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return Ok(None);
        }
        let Some(qualifier) = keys_qualifier(agg) else {
            return Ok(None);
        };
        let groups = agg
            .group_expr
            .iter()
            .map(|g| resolve(&g.clone().unalias()))
            .collect::<Result<Vec<_>>>()?;
        let mut measures = Vec::with_capacity(agg.aggr_expr.len());
        for a in &agg.aggr_expr {
            match Measure::read(&resolve(&a.clone().unalias())?) {
                Some(m) => measures.push(m),
                None => return Ok(None),
            }
        }

        let w = scope.watermark_ms;
        let wanted = EventFilter::from_filters(&input.predicates);
        if wanted.is_empty() {
            return Ok(None);
        }
        let conjuncts: Vec<Expr> = input
            .predicates
            .iter()
            .flat_map(|p| split_conjunction(p).into_iter().cloned())
            .collect();
        let (time_filters, other_filters): (Vec<Expr>, Vec<Expr>) = conjuncts
            .iter()
            .cloned()
            .partition(|c| columns_of(c).iter().any(|n| n == TS));
        let exact_range = time_filters
            .iter()
            .all(exact_time_bound)
            .then_some(wanted.time);
        let cold = wanted.time.before(w);
        let hot = wanted.time.at_or_after(w);
        let read_hot = !hot.is_empty() && scope.freshness == Freshness::Live;

        let mut choice = RollupChoice {
            used: None,
            passed_over: Vec::new(),
        };
        let mut rollup: Option<(&AvailableRollup, TimeRange)> = None;
        if !cold.is_empty() {
            for r in &self.rollups {
                if let Some((chosen, _)) = &rollup {
                    choice.passed_over.push((
                        r.def.table.into(),
                        format!("{} answers with fewer rows", chosen.def.table),
                    ));
                    continue;
                }
                match rollup_misfit(
                    r.def,
                    &measures,
                    &groups,
                    &other_filters,
                    exact_range,
                    cold,
                    w,
                ) {
                    Some(why) => choice.passed_over.push((r.def.table.into(), why)),
                    None => {
                        let days =
                            whole_periods(r.def.grain, cold, w).expect("checked by rollup_misfit");
                        rollup = Some((r, days));
                    }
                }
            }
        }
        let pieces_without_rollup = usize::from(!cold.is_empty()) + usize::from(read_hot);
        if rollup.is_none() && pieces_without_rollup < 2 {
            // One branch: the whole aggregate goes to it as it is.
            return Ok(None);
        }

        // The partial aggregate of every piece: keys k0.., distinct keys d0.., measures m0..
        let mut pieces: Vec<LogicalPlan> = Vec::new();
        let full_scan = TableScanBuilder::new(
            input.scan.table_name.clone(),
            Arc::clone(&input.scan.source),
        )
        .with_filters(input.predicates.clone())
        .build()?;
        let ts_col = Expr::Column(Column::new(Some(input.scan.table_name.clone()), TS));
        let mut routes = Vec::new();
        let mut raw_piece = |branch: RouteBranch, range: TimeRange| -> Result<()> {
            let source = match branch {
                RouteBranch::Cold => &input.cold,
                RouteBranch::Hot => &input.hot,
            };
            let bounds = range_filter(ts_col.clone(), range).unwrap_or(lit(true));
            let plan = branch_plan(&full_scan, source, branch, bounds)?;
            pieces.push(partial(
                plan,
                &groups,
                &measures,
                &input.scan.table_name,
                None,
            )?);
            routes.push(Route {
                branch,
                source: source.name().to_string(),
                time: range,
                users: wanted.users.as_ref().map(|u| u.iter().cloned().collect()),
                rollup: None,
            });
            Ok(())
        };
        match rollup {
            None => {
                if !cold.is_empty() {
                    raw_piece(RouteBranch::Cold, cold)?;
                }
            }
            Some((_, days)) => {
                // The partial days at the edges of the cold range, raw.
                if let Some(s) = cold.start_ms
                    && days.start_ms.is_some_and(|d| s < d)
                {
                    raw_piece(
                        RouteBranch::Cold,
                        TimeRange {
                            start_ms: Some(s),
                            end_ms: days.start_ms,
                        },
                    )?;
                }
                let cold_end = cold.end_ms.unwrap_or(w);
                if days.end_ms.is_some_and(|d| d < cold_end) {
                    raw_piece(
                        RouteBranch::Cold,
                        TimeRange {
                            start_ms: days.end_ms,
                            end_ms: Some(cold_end),
                        },
                    )?;
                }
            }
        }
        if read_hot {
            raw_piece(RouteBranch::Hot, hot)?;
        }
        if let Some((r, days)) = rollup {
            // The filters on keys apply to the rollup's columns of the same names.
            let filters = other_filters
                .iter()
                .map(|f| rename_columns(f.clone(), &input.scan.table_name, r.def.table, |n| n))
                .collect::<Result<Vec<_>>>()?;
            let plan = rollup_piece(r, days, filters)?;
            pieces.push(partial(
                plan,
                &groups,
                &measures,
                &input.scan.table_name,
                Some(r),
            )?);
            routes.push(Route {
                branch: RouteBranch::Cold,
                source: r.source.clone(),
                time: days,
                users: wanted.users.as_ref().map(|u| u.iter().cloned().collect()),
                rollup: Some(r.def.table.to_string()),
            });
            choice.used = Some((r.def.table.to_string(), days));
        }
        scope.routes.lock().expect("routes lock").extend(routes);
        if !self.rollups.is_empty() {
            scope.rollups.lock().expect("rollups lock").push(choice);
        }

        merge_pieces(agg, pieces, &measures, qualifier).map(Some)
    }
}

/// The partial aggregate over one piece: keys `__sluice_k*`, then one `__sluice_m*` per
/// measure (a `count(DISTINCT e)` keeps `e` as a key there). The expressions name the
/// columns of `streams` (as `streams`); on a rollup piece they are renamed to its columns.
fn partial(
    plan: LogicalPlan,
    groups: &[Expr],
    measures: &[Measure],
    streams: &TableReference,
    rollup: Option<&AvailableRollup>,
) -> Result<LogicalPlan> {
    let to_piece = |e: Expr| -> Result<Expr> {
        let Some(r) = rollup else { return Ok(e) };
        rename_columns(e, streams, r.def.table, |name| match r.def.grain.column() {
            Some(column) if name == TS => column,
            _ => name,
        })
    };
    let stream_col = |n: &str| Expr::Column(Column::new(Some(streams.clone()), n));
    let keys = groups
        .iter()
        .map(|g| to_piece(g.clone()))
        .collect::<Result<Vec<_>>>()?;
    let mut parts = Vec::with_capacity(measures.len());
    for m in measures {
        let part = match (m, rollup) {
            (Measure::Plays, None) => Part::Agg(count(lit(1i64))),
            (Measure::MsPlayed, None) => Part::Agg(sum(stream_col(MS_PLAYED))),
            (Measure::FirstTs, None) => Part::Agg(min(stream_col(TS))),
            (Measure::LastTs, None) => Part::Agg(max(stream_col(TS))),
            (Measure::MinOf(e), _) => Part::Agg(min(to_piece(e.clone())?)),
            (Measure::MaxOf(e), _) => Part::Agg(max(to_piece(e.clone())?)),
            (Measure::DistinctOf(e), _) => Part::Key(to_piece(e.clone())?),
            (m, Some(r)) => Part::Agg(rollup_measure(r.def, m).expect("checked by rollup_misfit")),
        };
        parts.push(part);
    }
    partial_aggregate(plan, keys, parts)
}

impl OptimizerRule for AggregateSplitRule {
    fn name(&self) -> &str {
        "sluice_aggregate_split"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let Some(scope) = QueryScopeOption::of(config) else {
            return Ok(Transformed::no(plan));
        };
        if scope.route == RouteMode::Raw {
            return Ok(Transformed::no(plan));
        }
        rewrite_nodes(plan, |node| match node {
            LogicalPlan::Aggregate(agg) => self.split(&scope, agg),
            _ => Ok(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::logical;
    use crate::tests::{analyst, engine, rollups};

    const RULE: &str = "sluice_aggregate_split";
    /// W of [`crate::tests::engine`], as the branches' filters write it.
    const W: &str = r#"TimestampMillisecond(1000000, Some("UTC"))"#;

    #[tokio::test]
    async fn an_aggregate_over_both_branches_is_a_partial_per_branch_and_one_merge() {
        let plan = logical(
            &engine(),
            &analyst(),
            "SELECT user_id, count(*) AS n FROM streams GROUP BY user_id",
            RULE,
        )
        .await;
        // A partial count of each branch, at its side of W, summed by the merge.
        assert_eq!(plan.added("Union"), 1, "{plan}");
        assert_eq!(
            plan.added("aggr=[[count(Int64(1)) AS __sluice_m0]]"),
            2,
            "{plan}"
        );
        assert_eq!(
            plan.added("aggr=[[sum(__sluice_m0) AS __sluice_f0]]"),
            1,
            "{plan}"
        );
        assert_eq!(
            plan.added(&format!("Filter: cold_memory.ts < {W}")),
            1,
            "{plan}"
        );
        assert_eq!(
            plan.added(&format!("Filter: hot_memory.ts >= {W}")),
            1,
            "{plan}"
        );
    }

    #[tokio::test]
    async fn whole_days_are_read_from_the_daily_rollup() {
        // W is noon of day 10: days 2 to 8 whole, the day of W raw.
        let plan = logical(
            &rollups::engine(),
            &analyst(),
            "SELECT user_id, count(*) AS n FROM streams \
             WHERE ts >= '1970-01-02T01:00:00Z' GROUP BY user_id",
            RULE,
        )
        .await;
        assert!(!plan.before.contains("plays_daily"), "{plan}");
        assert!(plan.added("TableScan: plays_daily") >= 1, "{plan}");
        assert!(plan.added("sum(plays_daily.plays)") >= 1, "{plan}");
    }

    #[tokio::test]
    async fn an_aggregate_that_does_not_merge_is_left_whole() {
        let plan = logical(
            &engine(),
            &analyst(),
            "SELECT avg(ms_played) AS a FROM streams",
            RULE,
        )
        .await;
        assert_eq!(plan.before, plan.after);
    }
}
