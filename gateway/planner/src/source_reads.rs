//! Counting what each source returns: a pass-through node over a branch's scan that adds to
//! the per-source metrics (scans, rows, bytes, time) when the plan runs (not when it is
//! planned, so `EXPLAIN` and branches that are never executed count nothing).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_datafusion_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use prometheus::Histogram;
use sluice_metrics::{SOURCE_BYTES, SOURCE_ROWS, SOURCE_SCANS, SOURCE_SECONDS};

/// Passes its input through, counting a scan of `source` and the rows it returns.
#[derive(Debug)]
pub(crate) struct SourceReadExec {
    input: Arc<dyn ExecutionPlan>,
    source: String,
    branch: &'static str,
}

impl SourceReadExec {
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, source: &str, branch: &'static str) -> Self {
        Self {
            input,
            source: source.to_string(),
            branch,
        }
    }
}

/// The one input of a node that takes one (`node` names it in the error otherwise).
pub(crate) fn only_child(
    children: Vec<Arc<dyn ExecutionPlan>>,
    node: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    let [input] = <[_; 1]>::try_from(children)
        .map_err(|c| internal_datafusion_err!("{node} takes one input, got {}", c.len()))?;
    Ok(input)
}

impl DisplayAs for SourceReadExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SourceReadExec: source={} branch={}",
            self.source, self.branch
        )
    }
}

impl ExecutionPlan for SourceReadExec {
    fn name(&self) -> &'static str {
        "SourceReadExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(children, "SourceReadExec")?;
        Ok(Arc::new(Self::new(input, &self.source, self.branch)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let labels = [self.source.as_str(), self.branch];
        // A scan is counted and timed once, by its first partition.
        let timer = (partition == 0).then(|| {
            SOURCE_SCANS.with_label_values(&labels).inc();
            ScanTimer {
                started: Instant::now(),
                seconds: SOURCE_SECONDS.with_label_values(&labels),
            }
        });
        let rows = SOURCE_ROWS.with_label_values(&labels);
        let bytes = SOURCE_BYTES.with_label_values(&labels);
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let counted = input.map(move |batch| {
            // The timer lives as long as the stream: it observes when the stream is dropped.
            let _timer = &timer;
            if let Ok(b) = &batch {
                rows.inc_by(b.num_rows() as u64);
                bytes.inc_by(b.get_array_memory_size() as u64);
            }
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}

/// Observes a scan's time when its stream is dropped: at its end, or when the query stops.
struct ScanTimer {
    started: Instant,
    seconds: Histogram,
}

impl Drop for ScanTimer {
    fn drop(&mut self) {
        self.seconds.observe(self.started.elapsed().as_secs_f64());
    }
}

/// A source's table whose scans are counted as reads of that source and branch.
#[derive(Debug)]
pub(crate) struct CountedTable {
    inner: Arc<dyn TableProvider>,
    source: String,
    branch: &'static str,
}

impl CountedTable {
    pub(crate) fn new(inner: Arc<dyn TableProvider>, source: &str, branch: &'static str) -> Self {
        Self {
            inner,
            source: source.to_string(),
            branch,
        }
    }
}

#[async_trait]
impl TableProvider for CountedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = self.inner.scan(state, projection, filters, limit).await?;
        Ok(Arc::new(SourceReadExec::new(
            scan,
            &self.source,
            self.branch,
        )))
    }
}
