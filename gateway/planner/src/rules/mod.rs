//! The route a query takes through the planner, in order: which of Sluice's rules run, where
//! among DataFusion's, and why there. [`crate::engine`] builds its session from these lists
//! and calls [`federate`] from here; each rule's own file says what it does and holds the
//! plan-text tests that show it.
//!
//! 1. [`analyzer_rules`], per query, after DataFusion's analyzer rules;
//! 2. [`logical_rules`], after DataFusion's optimizer rules, in each of its passes;
//! 3. [`federate`], once, on the optimized plan: the federation step;
//! 4. [`physical_rules`], after DataFusion's physical optimizer rules.
//!
//! Every rule's `name()` is `sluice_` and its file's name (`sluice_streams_split` in
//! `streams_split.rs`), so EXPLAIN VERBOSE tells ours from DataFusion's.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{AnalyzerRule, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion_federation::FederationOptimizerRule;

use crate::rollups::AvailableRollup;

mod aggregate_split;
mod catalog_join_placement;
mod catalog_lookup;
mod catalog_rollup;
mod eager_aggregate;
mod listener_rows;
mod listener_scope;
mod semi_join_distinct;
mod streams_split;
#[cfg(test)]
mod testing;
mod top_k_split;

use aggregate_split::AggregateSplitRule;
use catalog_join_placement::CatalogJoinPlacementRule;
use catalog_lookup::CatalogLookupRule;
use catalog_rollup::CatalogRollupRule;
use eager_aggregate::EagerAggregateRule;
use listener_rows::ListenerRowsRule;
use listener_scope::ListenerScopeRule;
use semi_join_distinct::SemiJoinDistinctRule;
use streams_split::StreamsSplitRule;
use top_k_split::TopKSplitRule;

/// The analyzer rules of a query of `listener` (`None`: an analyst's or an admin's, which
/// see every listener's rows), run after DataFusion's.
pub(crate) fn analyzer_rules(listener: Option<&str>) -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = Vec::new();
    if let Some(user) = listener {
        // In the analyzer, so before every optimizer rule, DataFusion's and ours: the
        // listener's filter is in the plan before anything reads, moves or splits a
        // relation, and DataFusion pushes it into the scans like the query's own filters.
        // Per query, as the listener is.
        rules.push(Arc::new(ListenerScopeRule::new(user)));
    }
    rules
}

/// The logical optimizer rules, run after DataFusion's (which have by then pushed the
/// query's filters into the scans of `streams`, where every rule below reads them).
/// `rollups` are those the cold store has, in the declared order (fewest rows first).
pub(crate) fn logical_rules(
    rollups: Vec<AvailableRollup>,
) -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let (catalog_rollups, rollups): (Vec<_>, Vec<_>) =
        rollups.into_iter().partition(|r| !r.def.joins.is_empty());
    vec![
        // First: an aggregate over `streams` joined with the catalog is read from a rollup
        // by catalog keys (artist, genre) while the joins it was built with are still in
        // the plan as the query wrote them; the rules below would rewrite them away.
        Arc::new(CatalogRollupRule::new(catalog_rollups)),
        // Where no catalog rollup answered: such an aggregate of one listener computed in
        // part below the joins. Before the aggregate split, which then splits (and reads
        // from rollups) the partial aggregate this rule leaves right above `streams`.
        Arc::new(EagerAggregateRule),
        // `IN`/`NOT IN`/`EXISTS` over `streams` (semi and anti joins, which DataFusion's
        // own rules made of the subqueries) read as distinct keys: an aggregate, so before
        // the aggregate split, which splits it like any other.
        Arc::new(SemiJoinDistinctRule),
        // Aggregates over `streams` split into partials per source, rollups substituted
        // where exact. Before the split of `streams`, which would otherwise take the scans
        // under these aggregates and union their raw rows.
        Arc::new(AggregateSplitRule::new(rollups)),
        // Every read of `streams` left, split at the query's W into its cold and hot
        // branches. After all the rules that look for a scan of `streams`.
        Arc::new(StreamsSplitRule),
        // `ORDER BY ... LIMIT k` copied onto each branch: after the split made the union.
        Arc::new(TopKSplitRule),
    ]
}

/// The federation step, once the logical rules are done: catalog joins placed, then the
/// parts of the plan a remote engine runs replaced by federated nodes (the SQL it is sent).
/// Depends on the routed plan alone, so a kept plan keeps this too.
///
/// Called by hand ([`crate::Query::optimize`], and [`crate::query_planner`] for EXPLAIN)
/// rather than listed after the logical rules, which would change what a query does:
/// DataFusion runs its optimizer in passes, so its rules and ours would run again over
/// federated nodes whose SQL is already chosen; EXPLAIN's logical plan would show the
/// federated nodes instead of the route; and a query keeps its routed plan (for its schema,
/// EXPLAIN and the plan cache) beside the federated one.
pub(crate) fn federate(plan: &LogicalPlan, state: &SessionState) -> Result<LogicalPlan> {
    let mut plan = plan.clone();
    for rule in federation_rules() {
        plan = rule.rewrite(plan, state)?.data;
    }
    Ok(plan)
}

/// The federation step's rules, each applied once, in order.
fn federation_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    vec![
        // Before federation: which side of a catalog join the remote engine reads decides
        // which parts are all remote, and so what federation hands it.
        Arc::new(CatalogJoinPlacementRule),
        // datafusion-federation: each largest part of the plan whose tables are all remote
        // goes to its engine's federation provider, whose own optimizer decides what the
        // engine runs. For ClickHouse that is the connector's `ClickHousePushdownRule`
        // (`connectors/clickhouse/src/pushdown.rs`, given through the provider that
        // `ClickHouseExecutor::federation_provider` makes): the largest part ClickHouse
        // answers exactly as DataFusion would becomes one SQL statement. It sits here,
        // inside federation, because it sees only the parts federation gives it.
        Arc::new(FederationOptimizerRule::new()),
    ]
}

/// The physical optimizer rules, run after DataFusion's (which have by then placed the
/// joins and chosen their build sides).
pub(crate) fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    vec![
        // A catalog join on the catalog's key done by index lookup. After DataFusion's, as
        // it reads a hash join in its final form: its build side chosen (the catalog on
        // the side the join probes), one partition, the keyed catalog scan right below it.
        Arc::new(CatalogLookupRule),
        // Last: a listener's rows taken from each scan the gateway reads, right above the
        // scan, once no rule is left to put an expression between the two.
        Arc::new(ListenerRowsRule),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list, as the engine runs it, by name: `sluice_` and the rule's file name.
    #[test]
    fn the_route_in_order() {
        let analyzer: Vec<String> = analyzer_rules(Some("a"))
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        assert_eq!(analyzer, ["sluice_listener_scope"]);
        assert!(analyzer_rules(None).is_empty(), "no scope for an analyst");
        let logical: Vec<String> = logical_rules(vec![])
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        assert_eq!(
            logical,
            [
                "sluice_catalog_rollup",
                "sluice_eager_aggregate",
                "sluice_semi_join_distinct",
                "sluice_aggregate_split",
                "sluice_streams_split",
                "sluice_top_k_split",
            ]
        );
        let federation: Vec<String> = federation_rules()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        assert_eq!(
            federation,
            ["sluice_catalog_join_placement", "federation_optimizer_rule"]
        );
        let physical: Vec<String> = physical_rules()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        assert_eq!(physical, ["sluice_catalog_lookup", "sluice_listener_rows"]);
    }
}
