//! A listener's query scoped in the plan: `user_id = <the listener>` on every relation that
//! has a `user_id` column, subqueries included (see [`crate::scope`]).

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{Filter, LogicalPlan, TableScan, lit};
use datafusion::optimizer::AnalyzerRule;

use crate::scope::USER_COLUMN;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::query;
    use crate::tests::{analyst, engine, rollups};

    const SCOPE: &str = r#"Filter: streams.user_id = Utf8("a")"#;

    /// An analyst's plan of `sql` through the analyzer, then with the rule applied to it.
    async fn scoped(e: &crate::QueryEngine, sql: &str) -> (String, Result<LogicalPlan>) {
        let q = query(e, &analyst(), sql).await;
        let (state, plan) = q.state_and_plan();
        let analyzed = state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
            .unwrap();
        let before = analyzed.display_indent().to_string();
        let after = ListenerScopeRule::new("a").analyze(analyzed, state.config_options());
        (before, after)
    }

    #[tokio::test]
    async fn every_scan_of_streams_gets_the_listeners_filter_right_above_it() {
        let (before, after) = scoped(
            &engine(),
            "SELECT count(*) AS n FROM streams s \
             WHERE EXISTS (SELECT 1 FROM streams o WHERE o.user_id = 'b' AND o.ts = s.ts)",
        )
        .await;
        let after = after.unwrap().display_indent().to_string();
        assert!(!before.contains(SCOPE), "{before}");
        let lines: Vec<&str> = after.lines().map(str::trim).collect();
        let scans = lines
            .iter()
            .filter(|l| l.starts_with("TableScan: streams"))
            .count();
        let scoped = lines
            .windows(2)
            .filter(|w| w[0] == SCOPE && w[1].starts_with("TableScan: streams"))
            .count();
        // The query's scan and the subquery's.
        assert_eq!((scans, scoped), (2, 2), "{after}");
    }

    #[tokio::test]
    async fn a_table_without_user_id_is_left_alone() {
        let (before, after) = scoped(&rollups::engine(), "SELECT track_name FROM tracks").await;
        assert_eq!(after.unwrap().display_indent().to_string(), before);
    }
}
