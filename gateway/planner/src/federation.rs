//! The last planning step: which engine runs what. Parts of the plan whose tables all live
//! in a remote engine (ClickHouse) are handed to it through datafusion-federation, as one
//! SQL statement each; the rest runs in the gateway. Before that, joins with the catalog are
//! placed: a catalog table joined with a large remote input (a cross-listener read) is read
//! from the engine's own copy so the join runs there and only its result moves; joined with
//! one listener's rows it stays in the gateway's memory (ClickHouse 18.16 rebuilds a join's
//! right side per query: 17–20 ms for 50,000 tracks).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_datafusion_err};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, TableProviderFilterPushDown, UserDefinedLogicalNode,
};
use datafusion::optimizer::OptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_federation::sql::SQLTableSource;
use datafusion_federation::{FederatedPlanNode, FederatedPlanner, FederationOptimizerRule};
use sluice_connector_api::EventFilter;
use tokio::sync::OnceCell;

use crate::catalog_lookup::{KeyedCatalog, KeyedScanExec};
use crate::source_reads::SourceReadExec;

/// A catalog table the gateway serves from memory, with an optional copy in the remote
/// engine that [`place_catalog_joins`] may read instead, and its rows indexed by `key` for
/// joins by lookup ([`crate::catalog_lookup`]).
#[derive(Debug)]
pub(crate) struct CatalogTable {
    local: Arc<dyn TableProvider>,
    remote: Option<Arc<dyn TableProvider>>,
    /// The table's one-column primary key, if it has one.
    key: Option<String>,
    /// Built at the first read (the catalog does not change while Sluice runs); `None` if
    /// the keys are not unique.
    keyed: OnceCell<Option<Arc<KeyedCatalog>>>,
}

impl CatalogTable {
    pub(crate) fn new(
        local: Arc<dyn TableProvider>,
        remote: Option<Arc<dyn TableProvider>>,
        key: Option<String>,
    ) -> Self {
        Self {
            local,
            remote,
            key,
            keyed: OnceCell::new(),
        }
    }

    async fn keyed(&self, state: &dyn Session) -> Result<Option<Arc<KeyedCatalog>>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        self.keyed
            .get_or_try_init(|| async {
                let all = self.local.scan(state, None, &[], None).await?;
                let batches = collect(all, state.task_ctx()).await?;
                Ok(KeyedCatalog::build(&self.schema(), &batches, key).map(Arc::new))
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.local.schema()
    }

    fn table_type(&self) -> TableType {
        self.local.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters stay above the scan, valid whichever copy is read.
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = self.local.scan(state, projection, filters, limit).await?;
        if limit.is_some() {
            return Ok(scan);
        }
        Ok(match self.keyed(state).await? {
            Some(keyed) => Arc::new(KeyedScanExec::new(scan, keyed, projection)),
            None => scan,
        })
    }
}

/// The remote table name of a federated table (`streams` for ClickHouse's raw events).
pub(crate) fn remote_name(table: &Arc<dyn TableProvider>) -> Option<String> {
    let source =
        datafusion_federation::get_table_source(&provider_as_source(Arc::clone(table))).ok()??;
    let sql = (source.as_ref() as &dyn Any).downcast_ref::<SQLTableSource>()?;
    Some(sql.table_reference().table().to_string())
}

fn is_remote_scan(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => {
            datafusion_federation::get_table_source(&scan.source).is_ok_and(|s| s.is_some())
        }
        _ => false,
    }
}

/// True if every table `plan` reads is remote (and it reads one).
fn all_remote(plan: &LogicalPlan) -> bool {
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

/// The catalog scan `plan` is made of (under filters, projections and aliases), if any.
fn catalog_remote(plan: &LogicalPlan) -> Option<Arc<dyn TableProvider>> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let catalog = (provider.as_ref() as &dyn Any).downcast_ref::<CatalogTable>()?;
            catalog.remote.clone()
        }
        LogicalPlan::Filter(_) | LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            catalog_remote(plan.inputs().first()?)
        }
        _ => None,
    }
}

/// Reads the catalog side of `plan` (a chain over one catalog scan) from the remote copy.
fn use_remote_copy(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| match node {
        LogicalPlan::TableScan(mut scan) => {
            let provider = source_as_provider(&scan.source)?;
            if let Some(remote) = (provider.as_ref() as &dyn Any)
                .downcast_ref::<CatalogTable>()
                .and_then(|c| c.remote.clone())
            {
                scan.source = provider_as_source(remote);
                return Ok(Transformed::yes(LogicalPlan::TableScan(scan)));
            }
            Ok(Transformed::no(LogicalPlan::TableScan(scan)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Moves catalog joins to the remote engine where the other side is remote and spans more
/// than one listener.
pub(crate) fn place_catalog_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Join(join) = &node else {
            return Ok(Transformed::no(node));
        };
        let left_remote = all_remote(&join.left);
        let right_remote = all_remote(&join.right);
        let move_right =
            left_remote && !one_listener(&join.left) && catalog_remote(&join.right).is_some();
        let move_left =
            right_remote && !one_listener(&join.right) && catalog_remote(&join.left).is_some();
        if !move_left && !move_right {
            return Ok(Transformed::no(node));
        }
        let LogicalPlan::Join(mut join) = node else {
            unreachable!("matched above")
        };
        if move_right {
            join.right = Arc::new(use_remote_copy(Arc::unwrap_or_clone(join.right))?);
        }
        if move_left {
            join.left = Arc::new(use_remote_copy(Arc::unwrap_or_clone(join.left))?);
        }
        Ok(Transformed::yes(LogicalPlan::Join(join)))
    })
    .map(|t| t.data)
}

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

/// Catalog joins placed, then the parts of the plan a remote engine runs replaced by
/// federated nodes (the SQL it is sent). Depends on the routed plan alone, so a kept plan
/// keeps this too.
pub(crate) fn federate(plan: &LogicalPlan, state: &SessionState) -> Result<LogicalPlan> {
    let placed = place_catalog_joins(plan.clone())?;
    Ok(FederationOptimizerRule::new().rewrite(placed, state)?.data)
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
