//! What Sluice counts, and the HTTP endpoint that shows it: Prometheus metrics at
//! `/metrics`, liveness at `/healthz`, readiness at `/readyz` (503 before serving and while
//! draining, see [`set_ready`]). The metrics are process-wide statics (queries by outcome
//! and route, per-source scans, rows, bytes and time, rollup reads, active queries, memory);
//! [`serve`] is the entry point of the endpoint.

mod http;
mod registry;

pub use http::serve;
pub use registry::{
    ACTIVE_QUERIES, MEMORY_POOL_BYTES, MEMORY_POOL_LIMIT_BYTES, PHYSICAL_PLAN_CACHE, PLAN_CACHE,
    QUERIES, QUERY_SECONDS, ROLLUP_READS, SOURCE_BYTES, SOURCE_ROWS, SOURCE_SCANS, SOURCE_SECONDS,
    is_ready, render, set_ready,
};
