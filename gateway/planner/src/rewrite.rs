//! What Sluice's optimizer rules share: one rewrite applied to every node of a plan,
//! subqueries included, bottom up.

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::LogicalPlan;

/// `plan` with each node for which `f` gives a new plan replaced by it.
pub(crate) fn rewrite_nodes(
    plan: LogicalPlan,
    mut f: impl FnMut(&LogicalPlan) -> Result<Option<LogicalPlan>>,
) -> Result<Transformed<LogicalPlan>> {
    plan.transform_up_with_subqueries(|node| match f(&node)? {
        Some(new) => Ok(Transformed::yes(new)),
        None => Ok(Transformed::no(node)),
    })
}
