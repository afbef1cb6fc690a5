//! `streams` as the union of its two branches at the query's watermark `W`:
//! `cold(ts < W) UNION ALL hot(ts >= W)`. Half-open on both sides, so an event at exactly
//! `W` is read once, from the hot branch. A branch whose half cannot meet the query's own
//! time filters is not read at all.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Result, ScalarValue, internal_err};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use sluice_catalog::TIME_ZONE;
use sluice_connector_api::{EventFilter, EventSource, TimeRange};

use crate::source_reads::SourceReadExec;

/// Which branch of `streams` a read went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteBranch {
    /// Events before `W`.
    Cold,
    /// Events at or after `W`.
    Hot,
}

/// One read of a `streams` branch, recorded while planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub branch: RouteBranch,
    /// The source that served it (`parquet`, `memory`, `clickhouse`, `redis`).
    pub source: String,
    /// The time range read, after intersecting the query's filters with the branch's half.
    pub time: TimeRange,
    /// The listeners read, if the filters named them.
    pub users: Option<Vec<String>>,
}

/// What one query carries through planning: its watermark and the reads it planned.
#[derive(Debug)]
pub(crate) struct QueryScope {
    pub(crate) watermark_ms: i64,
    pub(crate) routes: Mutex<Vec<Route>>,
}

/// The `streams` table: both branches behind one name.
#[derive(Debug)]
pub(crate) struct StreamsTable {
    hot: Arc<dyn EventSource>,
    cold: Arc<dyn EventSource>,
    schema: SchemaRef,
}

impl StreamsTable {
    pub(crate) fn new(hot: Arc<dyn EventSource>, cold: Arc<dyn EventSource>) -> Self {
        Self {
            hot,
            cold,
            schema: sluice_catalog::streams_schema(),
        }
    }

    /// Plans one branch: the source's scan of `filters` plus the branch's half of the range,
    /// the half applied exactly here (sources may only prune with it), then the projection.
    async fn branch(
        &self,
        state: &dyn Session,
        source: &Arc<dyn EventSource>,
        branch: RouteBranch,
        half: Expr,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ts_index = self.schema.index_of("ts")?;
        // Read the requested columns plus `ts`, which the branch filter needs.
        let read: Vec<usize> = match projection {
            Some(p) if !p.contains(&ts_index) => p.iter().copied().chain([ts_index]).collect(),
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut branch_filters = filters.to_vec();
        branch_filters.push(half.clone());
        let table = source.table();
        let scan = table
            .scan(state, Some(&read), &branch_filters, None)
            .await?;
        let label = match branch {
            RouteBranch::Cold => "cold",
            RouteBranch::Hot => "hot",
        };
        let scan = Arc::new(SourceReadExec::new(scan, source.name(), label));
        let read_schema = Arc::new(self.schema.project(&read)?);
        let df_schema = DFSchema::try_from(Arc::clone(&read_schema))?;
        let predicate = state.create_physical_expr(half, &df_schema)?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, scan)?);
        let wanted = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        if wanted.len() == read.len() {
            return Ok(filtered);
        }
        let exprs = wanted
            .iter()
            .map(|&c| {
                let name = self.schema.field(c).name().clone();
                let e = datafusion::physical_expr::expressions::col(&name, &read_schema)?;
                Ok((e, name))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(exprs, filtered)?))
    }
}

fn ts_literal(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some(TIME_ZONE.into()),
    ))
}

#[async_trait]
impl TableProvider for StreamsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Sources prune with the filters; DataFusion re-applies them exactly.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(scope) = state.config().get_extension::<QueryScope>() else {
            return internal_err!("streams scanned outside a Sluice query (no watermark)");
        };
        let w = scope.watermark_ms;
        let wanted = EventFilter::from_filters(filters);
        let users = wanted
            .users
            .as_ref()
            .map(|u| u.iter().cloned().collect::<Vec<_>>());
        let mut inputs = Vec::with_capacity(2);
        for (branch, source, range, half) in [
            (
                RouteBranch::Cold,
                &self.cold,
                wanted.time.before(w),
                col("ts").lt(ts_literal(w)),
            ),
            (
                RouteBranch::Hot,
                &self.hot,
                wanted.time.at_or_after(w),
                col("ts").gt_eq(ts_literal(w)),
            ),
        ] {
            if range.is_empty() || wanted.is_empty() {
                continue;
            }
            inputs.push(
                self.branch(state, source, branch, half, projection, filters)
                    .await?,
            );
            scope.routes.lock().expect("routes lock").push(Route {
                branch,
                source: source.name().to_string(),
                time: range,
                users: users.clone(),
            });
        }
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let plan: Arc<dyn ExecutionPlan> = match inputs.len() {
            0 => Arc::new(EmptyExec::new(projected)),
            _ => UnionExec::try_new(inputs)?,
        };
        Ok(match limit {
            Some(n) => Arc::new(GlobalLimitExec::new(plan, 0, Some(n))),
            None => plan,
        })
    }
}
