//! The cold store in ClickHouse, downstream of the planner: [`ClickHouseColdStore`] serves
//! the cold branch of `streams`, the rollups and the catalog copy as datafusion-federation
//! tables, so the largest part of a plan that ClickHouse can run is sent to it as one SQL
//! statement ([`ClickHouseDialect`], decided by the pushdown rule), and results come back
//! as Arrow as they arrive: `ArrowStream` batches from servers that have the format,
//! `Native` blocks decoded from older ones ([`ResultFormat`]). [`ClickHouseWatermark`] reads `W`
//! as the loader records it.

mod arrow;
mod arrow_stream;
mod client;
mod cluster;
mod config;
mod dialect;
mod error;
mod executor;
mod native;
mod pushdown;
mod rewrite;
mod schema;
mod shard_statement;
mod statement;
mod store;

pub use client::{ClickHouseClient, ServerVersion, WireFormat};
pub use config::{ClickHouseConfig, ResultFormat};
pub use dialect::ClickHouseDialect;
pub use error::{Error, Result};
pub use executor::ClickHouseExecutor;
pub use schema::{Layout, STREAMS_TABLE, WATERMARK_TABLE, create_statements, sharded_tables};
pub use store::{CATALOG_COPY, CATALOG_TABLES, ClickHouseColdStore, ClickHouseWatermark};
