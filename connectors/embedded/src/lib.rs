//! The embedded sources behind `sluice serve` with no configuration: a dataset folder written
//! by `sluice generate` served without any server. [`EmbeddedSources::open`] is the entry
//! point; it returns the same [`sluice_connector_api::Sources`] that the ClickHouse and Redis
//! connectors produce:
//! - cold: the dataset's Parquet files ([`ParquetColdStore`]), read for `ts < W`;
//! - hot: an in-memory store ([`MemoryHotStore`]) of the events at or after `W`, per listener
//!   and in time order, as Redis holds them;
//! - entities: `tracks`, `artists`, `albums` as in-memory Arrow tables;
//! - rollups: the declared rollups of the events before `W`, built once as Parquet files.

mod cold;
mod error;
mod hot;
mod open;
mod rollups;

pub use cold::ParquetColdStore;
pub use error::{Error, Result};
pub use hot::MemoryHotStore;
pub use open::{
    EmbeddedConfig, EmbeddedSources, default_watermark_ms, entity_batches, entity_tables,
    events_since, hot_window,
};
pub use rollups::rollup_tables;
