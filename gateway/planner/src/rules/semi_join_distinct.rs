//! `IN`, `NOT IN` and `EXISTS` over `streams` need only the distinct values they compare
//! ("tracks I never played": the tracks I played, once each, not every play). DataFusion
//! turns such subqueries into semi and anti joins; [`SemiJoinDistinctRule`] puts a
//! `GROUP BY` of the read columns on the `streams` side of each, which a semi or anti join
//! answers identically (it only asks whether a match exists). The aggregate is then split
//! like any other ([`super::aggregate_split`]): `track_first_last` holds each listener's distinct
//! tracks before `W`, and ClickHouse groups what it reads raw before sending it.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::rewrite::rewrite_nodes;
use crate::streams_input::streams_keys_only;

/// Reads the `streams` side of a semi or anti join as distinct rows, where it returns only
/// key columns (`user_id`, `track_uri`): grouping by `ts` would shrink nothing.
#[derive(Debug, Default)]
pub(crate) struct SemiJoinDistinctRule;

fn distinct(plan: &Arc<LogicalPlan>) -> Result<Option<Arc<LogicalPlan>>> {
    if !streams_keys_only(plan) {
        return Ok(None);
    }
    let keys = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect::<Vec<_>>();
    let grouped = LogicalPlanBuilder::from(Arc::clone(plan))
        .aggregate(keys, Vec::<Expr>::new())?
        .build()?;
    Ok(Some(Arc::new(grouped)))
}

impl OptimizerRule for SemiJoinDistinctRule {
    fn name(&self) -> &str {
        "sluice_semi_join_distinct"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        rewrite_nodes(plan, |node| {
            let LogicalPlan::Join(join) = node else {
                return Ok(None);
            };
            let (left, right) = match join.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => (None, distinct(&join.right)?),
                JoinType::RightSemi | JoinType::RightAnti => (distinct(&join.left)?, None),
                _ => (None, None),
            };
            if left.is_none() && right.is_none() {
                return Ok(None);
            }
            let mut join = join.clone();
            if let Some(l) = left {
                join.left = l;
            }
            if let Some(r) = right {
                join.right = r;
            }
            Ok(Some(LogicalPlan::Join(join)))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::logical;
    use crate::tests::{analyst, rollups};

    #[tokio::test]
    async fn the_streams_side_of_a_semi_join_is_read_as_distinct_keys() {
        let plan = logical(
            &rollups::engine(),
            &analyst(),
            "SELECT track_uri FROM tracks WHERE track_uri IN \
             (SELECT track_uri FROM streams WHERE user_id = 'b')",
            "sluice_semi_join_distinct",
        )
        .await;
        assert!(plan.before.contains("LeftSemi Join"), "{plan}");
        // A GROUP BY of the key with no aggregate, on the join's streams side.
        assert_eq!(plan.added("aggr=[[]]"), 1, "{plan}");
    }
}
