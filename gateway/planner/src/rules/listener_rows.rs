//! A listener's rows taken from each scan the gateway reads itself, before any expression of
//! the query sees the other listeners' rows of a batch (see [`crate::scope`]).

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;

use crate::route::QueryScopeOption;
use crate::scope::{ListenerRowsExec, USER_COLUMN};

/// Puts a [`ListenerRowsExec`] above each scan of a listener's query that the gateway reads
/// itself and that has a `user_id` column: table files (Parquet), and every source read
/// under a [`crate::source_reads::SourceReadExec`] but ClickHouse's statements (whose
/// output columns are the statement's, and whose rows ClickHouse filtered first).
#[derive(Debug, Default)]
pub(crate) struct ListenerRowsRule;

impl PhysicalOptimizerRule for ListenerRowsRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let listener = config
            .extensions
            .get::<QueryScopeOption>()
            .and_then(|s| s.0.listener.clone());
        match listener {
            Some(user) => guard(plan, &user, false),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "sluice_listener_rows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn guard(
    node: Arc<dyn ExecutionPlan>,
    user: &Arc<str>,
    under_source_read: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    let children = node.children();
    if children.is_empty() {
        let file_scan = node
            .downcast_ref::<DataSourceExec>()
            .is_some_and(|d| d.data_source().is::<FileScanConfig>());
        let read = file_scan
            || node.name() == "RedisScanExec"
            || (under_source_read && node.name() != "ClickHouseStatementExec");
        return match node.schema().index_of(USER_COLUMN) {
            Ok(column) if read => Ok(Arc::new(ListenerRowsExec::new(
                node,
                Arc::clone(user),
                column,
            ))),
            _ => Ok(node),
        };
    }
    let below = under_source_read || node.name() == "SourceReadExec";
    let children = children
        .into_iter()
        .map(|c| guard(Arc::clone(c), user, below))
        .collect::<Result<Vec<_>>>()?;
    replace_children_if_necessary(node, children)
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{listener, physical};
    use crate::tests::{analyst, engine};

    const RULE: &str = "sluice_listener_rows";
    const SQL: &str = "SELECT count(*) AS n FROM streams";

    #[tokio::test]
    async fn each_scan_of_a_listener_passes_on_only_its_rows() {
        let plan = physical(&engine(), &listener("a"), SQL, RULE).await;
        // One above each branch's scan, right below the node that counts the read.
        assert_eq!(plan.added("ListenerRowsExec: user_id=a"), 2, "{plan}");
        let lines: Vec<&str> = plan.after.lines().map(str::trim).collect();
        let under_reads = lines
            .windows(2)
            .filter(|w| w[0].starts_with("SourceReadExec") && w[1].starts_with("ListenerRowsExec"))
            .count();
        assert_eq!(under_reads, 2, "{plan}");
    }

    #[tokio::test]
    async fn an_analysts_scans_are_left_alone() {
        let plan = physical(&engine(), &analyst(), SQL, RULE).await;
        assert_eq!(plan.before, plan.after);
        assert!(!plan.after.contains("ListenerRowsExec"), "{plan}");
    }
}
