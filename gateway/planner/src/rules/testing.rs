//! The route run up to one rule, for the rules' plan-text tests: a statement planned by a
//! real engine over in-memory sources (the engines of [`crate::tests`]), its plan shown
//! before the rule and after it.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::optimizer::Optimizer;
use datafusion::physical_plan::displayable;
use sluice_auth::{Principal, Role};

use crate::{PlannedStatement, Query, QueryEngine, SessionSettings};

/// A plan before a rule and after it, as indented text.
#[derive(Debug)]
pub(crate) struct Around {
    pub(crate) before: String,
    pub(crate) after: String,
}

impl Around {
    /// The lines of `after` that hold `text`, as many as `before` has and more.
    pub(crate) fn added(&self, text: &str) -> usize {
        let count = |plan: &str| plan.lines().filter(|l| l.contains(text)).count();
        count(&self.after).saturating_sub(count(&self.before))
    }
}

impl std::fmt::Display for Around {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "before:\n{}\nafter:\n{}", self.before, self.after)
    }
}

/// A listener, scoped to its own rows.
pub(crate) fn listener(user: &str) -> Principal {
    Principal::new(user, Role::Listener, Some(user))
}

/// `sql` planned for `who` (route `auto`), not yet optimized.
pub(crate) async fn query(engine: &QueryEngine, who: &Principal, sql: &str) -> Query {
    match engine
        .plan(who, &SessionSettings::default(), sql)
        .await
        .unwrap()
    {
        PlannedStatement::Query(q) => *q,
        PlannedStatement::Set { .. } => panic!("not a query: {sql}"),
    }
}

/// `sql`'s plan through the analyzer (ours included) and DataFusion's optimizer rules, with
/// the logical rules of the route up to `rule`: without it, then with it.
pub(crate) async fn logical(
    engine: &QueryEngine,
    who: &Principal,
    sql: &str,
    rule: &str,
) -> Around {
    let query = query(engine, who, sql).await;
    let (state, plan) = query.state_and_plan();
    let analyzed = state
        .analyzer()
        .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
        .unwrap();
    let rules = state.optimizers();
    let at = rules
        .iter()
        .position(|r| r.name() == rule)
        .unwrap_or_else(|| panic!("{rule} is not a logical rule of the route"));
    let upto = |n: usize| -> String {
        let optimized = Optimizer::with_rules(rules[..n].to_vec())
            .optimize(analyzed.clone(), state, |_, _| {})
            .unwrap();
        optimized.display_indent().to_string()
    };
    Around {
        before: upto(at),
        after: upto(at + 1),
    }
}

/// `sql`'s physical plan, routed and federated, with the physical rules up to `rule`:
/// without it, then with it.
pub(crate) async fn physical(
    engine: &QueryEngine,
    who: &Principal,
    sql: &str,
    rule: &str,
) -> Around {
    let mut query = query(engine, who, sql).await;
    query.optimize().unwrap();
    let federated = query.federated().expect("a query is federated").clone();
    let (state, _) = query.state_and_plan();
    let rules = state.physical_optimizers();
    let at = rules
        .iter()
        .position(|r| r.name() == rule)
        .unwrap_or_else(|| panic!("{rule} is not a physical rule of the route"));
    let before = physical_with(state, &federated, rules[..at].to_vec()).await;
    let after = physical_with(state, &federated, rules[..=at].to_vec()).await;
    Around { before, after }
}

async fn physical_with(
    state: &SessionState,
    federated: &LogicalPlan,
    rules: Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>>,
) -> String {
    let state = SessionStateBuilder::new_from_existing(state.clone())
        .with_physical_optimizer_rules(rules)
        .build();
    let plan = crate::query_planner::physical_plan(federated, &state)
        .await
        .unwrap();
    displayable(plan.as_ref()).indent(false).to_string()
}
