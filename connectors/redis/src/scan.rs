//! The hot branch as a DataFusion table: the listeners and time range come from the pushed
//! filters, and Redis is read when the plan runs (EXPLAIN reads nothing).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
use sluice_connector_api::EventFilter;

use crate::store::RedisHotStore;

#[derive(Debug)]
pub(crate) struct RedisTable {
    store: RedisHotStore,
}

impl RedisTable {
    pub(crate) fn new(store: RedisHotStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl TableProvider for RedisTable {
    fn schema(&self) -> SchemaRef {
        sluice_catalog::streams_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema().project(p)?),
            None => self.schema(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(RedisScanExec {
            store: self.store.clone(),
            filter: EventFilter::from_filters(filters),
            projection: projection.cloned(),
            schema,
            properties,
        }))
    }
}

/// Reads the listeners' slices of the hot window from Redis.
#[derive(Debug)]
pub(crate) struct RedisScanExec {
    store: RedisHotStore,
    filter: EventFilter,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for RedisScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let users = match &self.filter.users {
            Some(u) => format!(
                "{} ({} sorted-set range reads)",
                u.iter().cloned().collect::<Vec<_>>().join(","),
                u.len()
            ),
            None => "all listeners (one sorted-set range read each)".to_string(),
        };
        let bound = |b: Option<i64>| b.map_or("unbounded".to_string(), |ms| ms.to_string());
        write!(
            f,
            "RedisScanExec: url={} users={} ts_ms=[{}, {})",
            self.store.config().endpoint(),
            users,
            bound(self.filter.time.start_ms),
            bound(self.filter.time.end_ms)
        )
    }
}

impl ExecutionPlan for RedisScanExec {
    fn name(&self) -> &'static str {
        "RedisScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let store = self.store.clone();
        let filter = self.filter.clone();
        let projection = self.projection.clone();
        let batches = futures::stream::once(async move {
            let batches = if filter.is_empty() {
                vec![]
            } else {
                store.read(&filter).await?
            };
            let projected = batches
                .into_iter()
                .map(|b| match &projection {
                    Some(p) => b.project(p).map_err(Into::into),
                    None => Ok(b),
                })
                .collect::<Vec<Result<_>>>();
            Ok::<_, datafusion::error::DataFusionError>(futures::stream::iter(projected))
        })
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::iter(vec![Err(e)]).boxed(),
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}
