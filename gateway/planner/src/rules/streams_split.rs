//! `streams` as the union of its two branches at the query's watermark `W`:
//! `cold(ts < W) UNION ALL hot(ts >= W)`. Half-open on both sides, so an event at exactly
//! `W` is read once, from the hot branch. A branch whose half cannot meet the query's own
//! time filters is not read at all.
//!
//! The split is a logical rewrite ([`StreamsSplitRule`]), made after DataFusion has pushed
//! the query's filters into the scan of `streams`: each branch becomes a scan of its source
//! with those filters and its half of the range ([`crate::streams::branch_plan`]), so the
//! federation step that follows can hand a cold branch in ClickHouse, with everything above
//! it that ClickHouse can run, to ClickHouse as one statement.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Result, TableReference, internal_err};
use datafusion::logical_expr::{
    EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder, TableScan, col,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use sluice_connector_api::{EventFilter, EventSource};

use crate::rewrite::rewrite_nodes;
use crate::route::{QueryScope, QueryScopeOption, Route, RouteBranch};
use crate::settings::Freshness;
use crate::streams::{branch_plan, streams_branches, ts_literal};

/// Replaces every scan of `streams` with the union of its branches at the query's `W`.
#[derive(Debug, Default)]
pub(crate) struct StreamsSplitRule;

impl StreamsSplitRule {
    fn split(
        &self,
        scope: &QueryScope,
        scan: &TableScan,
        cold: &Arc<dyn EventSource>,
        hot: &Arc<dyn EventSource>,
    ) -> Result<LogicalPlan> {
        let w = scope.watermark_ms;
        let wanted = EventFilter::from_filters(&scan.filters);
        let users = wanted
            .users
            .as_ref()
            .map(|u| u.iter().cloned().collect::<Vec<_>>());
        let mut branches = Vec::with_capacity(2);
        for (branch, source, range, half) in [
            (
                RouteBranch::Cold,
                cold,
                wanted.time.before(w),
                col("ts").lt(ts_literal(w)),
            ),
            (
                RouteBranch::Hot,
                hot,
                wanted.time.at_or_after(w),
                col("ts").gt_eq(ts_literal(w)),
            ),
        ] {
            if range.is_empty()
                || wanted.is_empty()
                || (branch == RouteBranch::Hot && scope.freshness == Freshness::Cold)
            {
                continue;
            }
            branches.push(branch_plan(scan, source, branch, half)?);
            scope.routes.lock().expect("routes lock").push(Route {
                branch,
                source: source.name().to_string(),
                time: range,
                users: users.clone(),
                rollup: None,
            });
        }
        let plan = match branches.len() {
            0 => LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::clone(&scan.projected_schema),
            }),
            1 => branches.pop().expect("one branch"),
            _ => {
                let mut branches = branches.into_iter();
                let first = branches.next().expect("two branches");
                let union = branches
                    .try_fold(LogicalPlanBuilder::from(first), |b, p| b.union(p))?
                    .build()?;
                requalify(union, &scan.table_name, &scan.projected_schema)?
            }
        };
        match scan.fetch {
            Some(n) => LogicalPlanBuilder::from(plan).limit(0, Some(n))?.build(),
            None => Ok(plan),
        }
    }
}

/// Names the columns of `plan` as the scan of `streams` did (`table.column`).
fn requalify(
    plan: LogicalPlan,
    table: &TableReference,
    schema: &datafusion::common::DFSchemaRef,
) -> Result<LogicalPlan> {
    let exprs = plan
        .schema()
        .columns()
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| Expr::Column(c).alias_qualified(Some(table.clone()), f.name()))
        .collect::<Vec<_>>();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

impl OptimizerRule for StreamsSplitRule {
    fn name(&self) -> &str {
        "sluice_streams_split"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let scope = QueryScopeOption::of(config);
        rewrite_nodes(plan, |node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(None);
            };
            let Some((cold, hot)) = streams_branches(scan) else {
                return Ok(None);
            };
            let Some(scope) = &scope else {
                return internal_err!("streams planned outside a Sluice query (no watermark)");
            };
            self.split(scope, scan, &cold, &hot).map(Some)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::logical;
    use crate::tests::{analyst, engine};

    const RULE: &str = "sluice_streams_split";
    /// W of [`crate::tests::engine`], as the branches' filters write it.
    const W: &str = r#"TimestampMillisecond(1000000, Some("UTC"))"#;

    #[tokio::test]
    async fn a_read_of_streams_is_the_union_of_its_branches_at_w() {
        let plan = logical(
            &engine(),
            &analyst(),
            "SELECT user_id, track_uri FROM streams",
            RULE,
        )
        .await;
        assert!(plan.before.contains("TableScan: streams"), "{plan}");
        assert!(!plan.after.contains("TableScan: streams"), "{plan}");
        assert_eq!(plan.added("Union"), 1, "{plan}");
        assert!(plan.added(&format!("cold_memory.ts < {W}")) >= 1, "{plan}");
        assert!(plan.added(&format!("hot_memory.ts >= {W}")) >= 1, "{plan}");
    }

    #[tokio::test]
    async fn a_branch_the_time_filters_rule_out_is_not_read() {
        let plan = logical(
            &engine(),
            &analyst(),
            "SELECT user_id FROM streams WHERE ts < '1970-01-01T00:16:40Z'",
            RULE,
        )
        .await;
        assert!(plan.added(&format!("cold_memory.ts < {W}")) >= 1, "{plan}");
        assert!(!plan.after.contains("hot_memory"), "{plan}");
        assert!(!plan.after.contains("Union"), "{plan}");
    }
}
