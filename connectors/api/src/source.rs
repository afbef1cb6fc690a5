use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::not_impl_err;
use datafusion::error::Result;
use sluice_catalog::RollupDef;

/// One branch of `streams`: a store of listening events with the logical `streams` schema
/// ([`sluice_catalog::streams_schema`]).
#[async_trait]
pub trait EventSource: Debug + Send + Sync {
    /// Short name for logs and EXPLAIN: `memory`, `parquet`, `redis`, `clickhouse`.
    fn name(&self) -> &str;

    /// The table serving this branch. The planner adds the branch's half of the time range
    /// (`ts < W` or `ts >= W`) to the filters it passes; the provider prunes with them.
    fn table(&self) -> Arc<dyn TableProvider>;

    /// Columns of `streams` that this source's table names differently, as
    /// `(logical, source)` pairs: ClickHouse keeps `ts` as `timestamp_ms`.
    fn renamed_columns(&self) -> &[(&'static str, &'static str)] {
        &[]
    }

    /// Adds events (a batch with the `streams` schema, no nulls) and returns how many were
    /// new: an event already held (same listener, time and track) is stored once, so a
    /// retried write is harmless. Sources that take no writes say so.
    async fn append(&self, batch: &RecordBatch) -> Result<u64> {
        let _ = batch;
        not_impl_err!("the {} source does not accept writes", self.name())
    }
}

/// Where the hot/cold boundary `W` is published. Every event with `ts < W` is in the cold
/// source, every event with `ts >= W` in the hot one. A query reads it once.
#[async_trait]
pub trait Watermark: Debug + Send + Sync {
    /// `W` in milliseconds since the Unix epoch (UTC).
    async fn current_ms(&self) -> Result<i64>;
}

/// A watermark that does not move (the embedded default, where nothing is loaded while
/// serving).
#[derive(Debug, Clone, Copy)]
pub struct FixedWatermark(pub i64);

#[async_trait]
impl Watermark for FixedWatermark {
    async fn current_ms(&self) -> Result<i64> {
        Ok(self.0)
    }
}

/// Everything the planner reads from: the two branches of `streams`, the watermark between
/// them, and the entity tables by logical name.
#[derive(Debug, Clone)]
pub struct Sources {
    pub hot: Arc<dyn EventSource>,
    pub cold: Arc<dyn EventSource>,
    pub watermark: Arc<dyn Watermark>,
    /// `tracks`, `artists`, `albums`, served by the gateway.
    pub entities: Vec<(String, Arc<dyn TableProvider>)>,
    /// Copies of entity tables kept in the cold store's engine, by the same names: the
    /// planner joins there when the other side of the join lives there and is large.
    pub remote_entities: Vec<(String, Arc<dyn TableProvider>)>,
    /// Rollups of `streams`, each with its declaration, queryable by name (user-keyed:
    /// listeners see their own rows) and tried in this order (fewest rows first).
    pub rollups: Vec<(&'static RollupDef, Arc<dyn TableProvider>)>,
}
