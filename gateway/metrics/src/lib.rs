//! What Sluice counts, and the HTTP endpoint that shows it: Prometheus metrics at
//! `/metrics`, liveness at `/healthz`, readiness at `/readyz`. The counters are process-wide
//! ([`SOURCE_SCANS`], [`SOURCE_ROWS`], [`QUERIES`], [`QUERY_SECONDS`]); [`serve`] is the
//! entry point of the endpoint.

mod http;
mod registry;

pub use http::serve;
pub use registry::{QUERIES, QUERY_SECONDS, SOURCE_ROWS, SOURCE_SCANS, render};
