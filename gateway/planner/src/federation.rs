//! Which tables and plans are remote: read through datafusion-federation from an engine that
//! runs SQL (ClickHouse). The federation step of the route (`rules::federate`) hands the parts
//! of a plan whose tables are all remote to their engine; the rules before it ask these
//! questions of the plan they rewrite.

use std::any::Any;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlan;
use datafusion_federation::sql::SQLTableSource;
use sluice_connector_api::EventFilter;

/// The remote table name of a federated table (`streams` for ClickHouse's raw events).
pub(crate) fn remote_name(table: &Arc<dyn TableProvider>) -> Option<String> {
    let source =
        datafusion_federation::get_table_source(&provider_as_source(Arc::clone(table))).ok()??;
    let sql = (source.as_ref() as &dyn Any).downcast_ref::<SQLTableSource>()?;
    Some(sql.table_reference().table().to_string())
}

/// True if `plan` is a scan of a remote table.
pub(crate) fn is_remote_scan(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => {
            datafusion_federation::get_table_source(&scan.source).is_ok_and(|s| s.is_some())
        }
        _ => false,
    }
}

/// True if every table `plan` reads is remote (and it reads one).
pub(crate) fn all_remote(plan: &LogicalPlan) -> bool {
    let mut scans = 0;
    let mut remote = true;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(_) = node {
            scans += 1;
            remote &= is_remote_scan(node);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    scans > 0 && remote
}

/// True if `plan` reads the rows of at most one listener.
pub(crate) fn one_listener(plan: &LogicalPlan) -> bool {
    let mut filters = Vec::new();
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::Filter(f) => filters.push(f.predicate.clone()),
            LogicalPlan::TableScan(s) => filters.extend(s.filters.iter().cloned()),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    EventFilter::from_filters(&filters)
        .users
        .is_some_and(|u| u.len() <= 1)
}
