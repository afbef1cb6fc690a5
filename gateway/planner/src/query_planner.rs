//! Physical planning: the federated parts of a plan by datafusion-federation's planner (each
//! remote read counted like the gateway's own source reads), the rest by DataFusion's. The
//! session's [`SluiceQueryPlanner`] federates first, for the plans DataFusion plans itself
//! (EXPLAIN); a query's own plan is federated once by [`crate::rules::federate`] and planned
//! by [`physical_plan`].

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_datafusion_err};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_federation::{FederatedPlanNode, FederatedPlanner};

use crate::rules::federate;
use crate::source_reads::SourceReadExec;

/// Plans federated parts for remote engines and the rest with DataFusion's planner.
#[derive(Debug, Default)]
pub(crate) struct SluiceQueryPlanner;

#[async_trait]
impl QueryPlanner for SluiceQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = session_state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| internal_datafusion_err!("planning outside a SessionState"))?;
        physical_plan(&federate(logical_plan, state)?, state).await
    }
}

/// The physical plan of a [`federate`]d plan.
pub(crate) async fn physical_plan(
    federated: &LogicalPlan,
    state: &SessionState,
) -> Result<Arc<dyn ExecutionPlan>> {
    DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(CountedFederatedPlanner)])
        .create_physical_plan(federated, state)
        .await
}

/// datafusion-federation's planner for federated nodes, with each remote read counted like
/// the gateway's own source reads.
#[derive(Debug)]
struct CountedFederatedPlanner;

#[async_trait]
impl ExtensionPlanner for CountedFederatedPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session_state: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(fed) = node.as_any().downcast_ref::<FederatedPlanNode>() else {
            return Ok(None);
        };
        let source = engine_name(fed.plan()).unwrap_or_else(|| "remote".to_string());
        let exec = FederatedPlanner::new()
            .plan_extension(
                planner,
                node,
                logical_inputs,
                physical_inputs,
                session_state,
                planning_ctx,
            )
            .await?
            .ok_or_else(|| internal_datafusion_err!("federated node not planned"))?;
        Ok(Some(Arc::new(SourceReadExec::new(exec, &source, "cold"))))
    }
}

/// `clickhouse` for a plan over ClickHouse tables: the first word of the provider's context.
fn engine_name(plan: &LogicalPlan) -> Option<String> {
    let mut name = None;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(Some(source)) = datafusion_federation::get_table_source(&scan.source)
        {
            name = source
                .federation_provider()
                .compute_context()
                .and_then(|c| c.split_whitespace().next().map(str::to_string));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    name
}
