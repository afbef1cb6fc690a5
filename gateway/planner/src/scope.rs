//! The listener scope: for a principal bound to one listener, `user_id = <that listener>` is
//! put on every user-keyed relation of the plan, subqueries included, before any other rule
//! of ours runs. It is part of the plan, never of the SQL text, so no SQL can step around it.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{Filter, LogicalPlan, TableScan, lit};
use datafusion::optimizer::AnalyzerRule;

/// The column that says whose a row is.
pub(crate) const USER_COLUMN: &str = "user_id";

/// Puts a listener's filter on every relation that has a `user_id` column.
#[derive(Debug)]
pub(crate) struct ListenerScopeRule {
    user_id: Arc<str>,
}

impl ListenerScopeRule {
    pub(crate) fn new(user_id: &str) -> Self {
        Self {
            user_id: user_id.into(),
        }
    }

    fn scope(&self, scan: TableScan) -> Result<Transformed<LogicalPlan>> {
        // Any relation with a user_id column is user-keyed: failing closed beats a list of
        // names that a new table could be missing from.
        let Ok(index) = scan.source.schema().index_of(USER_COLUMN) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        if scan
            .projection
            .as_ref()
            .is_some_and(|p| !p.contains(&index))
        {
            return plan_err!(
                "cannot scope {} to the listener: user_id is projected away",
                scan.table_name
            );
        }
        let column = Column::new(Some(scan.table_name.clone()), USER_COLUMN);
        let predicate = datafusion::logical_expr::Expr::Column(column).eq(lit(&*self.user_id));
        let scan = Arc::new(LogicalPlan::TableScan(scan));
        Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
            predicate, scan,
        )?)))
    }
}

impl AnalyzerRule for ListenerScopeRule {
    fn name(&self) -> &str {
        "sluice_listener_scope"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) => self.scope(scan),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}
