//! Aggregates over `streams` joined with the catalog ("plays per genre in 2019", "my top
//! artist this year") answered from a rollup kept by catalog attributes
//! (`plays_monthly_genre`, `plays_monthly_artist`) for the whole months of their range, and
//! from the raw events, joined as the query joins them, for the days at its edges and after
//! `W`. One final merge combines the pieces ([`crate::partial_aggregate`]).
//!
//! [`CatalogRollupRule`] takes an aggregate whose input is one read of `streams` and reads of
//! catalog tables, combined by inner joins on exactly the catalog's foreign keys the rollup
//! was built with; where a rollup gives the same answer is [`crate::catalog_rollups`]'s to
//! say. Anything else is left to the other rules.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, TableScan, TableScanBuilder};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use sluice_catalog::STREAMS;
use sluice_connector_api::{EventFilter, TimeRange};

use crate::catalog_rollups::{Fitted, JoinedInput, fit, joins_match, read_input, resolve};
use crate::partial_aggregate::{Measure, Part, keys_qualifier, merge_pieces, partial_aggregate};
use crate::rewrite::rewrite_nodes;
use crate::rollups::{AvailableRollup, range_filter, rollup_piece};
use crate::route::{QueryScope, QueryScopeOption, RollupChoice, Route, RouteBranch};
use crate::settings::RouteMode;
use crate::streams::streams_branches;
use crate::streams_input::TS;

/// Reads aggregates over `streams` joined with the catalog from rollups by catalog keys.
#[derive(Debug)]
pub(crate) struct CatalogRollupRule {
    /// The rollups built through joins with the catalog, fewest rows first.
    rollups: Vec<AvailableRollup>,
}

impl CatalogRollupRule {
    pub(crate) fn new(rollups: Vec<AvailableRollup>) -> Self {
        Self { rollups }
    }
}

/// `plan` with its read of `streams` restricted to `range` (a filter the split of `streams`
/// at `W` then reads like the query's own).
fn restrict_streams(plan: &LogicalPlan, range: TimeRange) -> Result<LogicalPlan> {
    plan.clone()
        .transform_down(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            if streams_branches(scan).is_none() {
                return Ok(Transformed::no(node));
            }
            let ts = Expr::Column(Column::new(Some(scan.table_name.clone()), TS));
            let mut filters = scan.filters.clone();
            filters.extend(range_filter(ts, range));
            let restricted: TableScan = TableScanBuilder::from(scan.clone())
                .with_filters(filters)
                .build()?;
            Ok(Transformed::new(
                LogicalPlan::TableScan(restricted),
                true,
                datafusion::common::tree_node::TreeNodeRecursion::Jump,
            ))
        })
        .map(|t| t.data)
}

impl CatalogRollupRule {
    fn rewrite_aggregate(
        &self,
        scope: &QueryScope,
        agg: &Aggregate,
    ) -> Result<Option<LogicalPlan>> {
        // Grouping sets, and the partial aggregates of this rule's own edge pieces (their
        // measures are named `__sluice_m*`; their ranges hold no whole period).
        if agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
            || agg
                .aggr_expr
                .iter()
                .any(|e| e.schema_name().to_string().starts_with("__sluice_"))
        {
            return Ok(None);
        }
        let mut input = JoinedInput::default();
        let Some(columns) = read_input(&agg.input, &mut input) else {
            return Ok(None);
        };
        if input.streams != 1 || input.catalog.is_empty() {
            return Ok(None);
        }
        let Some(qualifier) = keys_qualifier(agg) else {
            return Ok(None);
        };
        let Some(groups) = agg
            .group_expr
            .iter()
            .map(|g| resolve(g, &columns))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        // Each measure with the query's own expression, kept for the raw pieces.
        let mut measures = Vec::with_capacity(agg.aggr_expr.len());
        for a in &agg.aggr_expr {
            let Some(m) = resolve(a, &columns).as_ref().and_then(Measure::read) else {
                return Ok(None);
            };
            measures.push((m, a.clone().unalias()));
        }
        let conjuncts: Vec<Expr> = input
            .predicates
            .iter()
            .flat_map(|p| split_conjunction(p).into_iter().cloned())
            .collect();
        let (time_filters, other_filters): (Vec<Expr>, Vec<Expr>) = conjuncts
            .into_iter()
            .partition(|c| c.column_refs().iter().any(|n| is_streams_ts(n)));
        let wanted = EventFilter::from_filters(
            &time_filters
                .iter()
                .chain(other_filters.iter().filter(|f| {
                    f.column_refs()
                        .iter()
                        .all(|c| c.relation.as_ref().is_some_and(|r| r.table() == STREAMS))
                }))
                .cloned()
                .collect::<Vec<_>>(),
        );
        if wanted.is_empty() {
            return Ok(None);
        }
        let w = scope.watermark_ms;

        let mut choice = RollupChoice {
            used: None,
            passed_over: Vec::new(),
        };
        let mut chosen: Option<(&AvailableRollup, Fitted)> = None;
        for r in &self.rollups {
            let joins_match = joins_match(r.def, &input);
            if let Some((c, _)) = &chosen {
                if joins_match {
                    choice.passed_over.push((
                        r.def.table.into(),
                        format!("{} answers with fewer rows", c.def.table),
                    ));
                }
                continue;
            }
            match fit(
                r.def,
                &input,
                &groups,
                &measures,
                &time_filters,
                &other_filters,
                wanted.time,
                w,
            ) {
                Ok(f) => chosen = Some((r, f)),
                // Only rollups of the same joins say why: the others are for other queries.
                Err(why) if joins_match => choice.passed_over.push((r.def.table.into(), why)),
                Err(_) => {}
            }
        }
        let Some((r, fitted)) = chosen else {
            if !choice.passed_over.is_empty() {
                scope.rollups.lock().expect("rollups lock").push(choice);
            }
            return Ok(None);
        };

        let mut pieces = Vec::new();
        // The edges of the range outside the rollup's whole periods, as the query reads them.
        let edges = [
            TimeRange {
                start_ms: wanted.time.start_ms,
                end_ms: fitted.range.start_ms,
            },
            TimeRange {
                start_ms: fitted.range.end_ms,
                end_ms: wanted.time.end_ms,
            },
        ];
        for edge in edges {
            if (edge.start_ms.is_none() && edge.end_ms.is_none()) || edge.is_empty() {
                continue;
            }
            let plan = restrict_streams(&agg.input, edge)?;
            let keys = agg.group_expr.iter().map(|g| g.clone().unalias()).collect();
            let parts = measures
                .iter()
                .map(|(m, e)| match (m, e) {
                    (
                        Measure::DistinctOf(_),
                        Expr::AggregateFunction(AggregateFunction { params, .. }),
                    ) => Part::Key(params.args[0].clone()),
                    (_, e) => Part::Agg(e.clone()),
                })
                .collect();
            pieces.push(partial_aggregate(plan, keys, parts)?);
        }
        let plan = rollup_piece(r, fitted.range, fitted.filters)?;
        pieces.push(partial_aggregate(plan, fitted.groups, fitted.parts)?);
        scope.routes.lock().expect("routes lock").push(Route {
            branch: RouteBranch::Cold,
            source: r.source.clone(),
            time: fitted.range,
            users: wanted.users.as_ref().map(|u| u.iter().cloned().collect()),
            rollup: Some(r.def.table.to_string()),
        });
        choice.used = Some((r.def.table.to_string(), fitted.range));
        scope.rollups.lock().expect("rollups lock").push(choice);
        let measures: Vec<Measure> = measures.into_iter().map(|(m, _)| m).collect();
        merge_pieces(agg, pieces, &measures, qualifier).map(Some)
    }
}

fn is_streams_ts(c: &Column) -> bool {
    c.name == TS && c.relation.as_ref().is_some_and(|r| r.table() == STREAMS)
}

impl OptimizerRule for CatalogRollupRule {
    fn name(&self) -> &str {
        "sluice_catalog_rollup"
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
        if scope.route == RouteMode::Raw || self.rollups.is_empty() {
            return Ok(Transformed::no(plan));
        }
        rewrite_nodes(plan, |node| match node {
            LogicalPlan::Aggregate(agg) => self.rewrite_aggregate(&scope, agg),
            _ => Ok(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::logical;
    use crate::tests::{analyst, catalog_rollups};

    const RULE: &str = "sluice_catalog_rollup";
    const JOINS: &str = "FROM streams s JOIN tracks t ON s.track_uri = t.track_uri \
                         JOIN artists a ON t.artist_uri = a.artist_uri";

    #[tokio::test]
    async fn whole_months_of_plays_per_genre_come_from_the_genre_rollup() {
        let plan = logical(
            &catalog_rollups::engine(),
            &analyst(),
            &format!(
                "SELECT a.genre, count(*) AS n {JOINS} \
                 WHERE s.ts >= '1970-01-15T00:00:00Z' AND s.ts < '1970-04-05T00:00:00Z' \
                 GROUP BY a.genre"
            ),
            RULE,
        )
        .await;
        assert!(!plan.before.contains("plays_monthly_genre"), "{plan}");
        assert!(plan.added("TableScan: plays_monthly_genre") >= 1, "{plan}");
        // The rollup's months, and the raw edges (15 January on, March on) joined as the
        // query joins them, merged.
        assert_eq!(plan.added("Union"), 1, "{plan}");
        assert!(plan.added("sum(__sluice_m0)") >= 1, "{plan}");
    }

    #[tokio::test]
    async fn a_measure_the_rollups_do_not_keep_is_left_alone() {
        let plan = logical(
            &catalog_rollups::engine(),
            &analyst(),
            &format!("SELECT a.genre, min(s.ts) AS f {JOINS} GROUP BY a.genre"),
            RULE,
        )
        .await;
        assert_eq!(plan.before, plan.after);
    }
}
