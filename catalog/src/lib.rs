//! The data model of Sluice, at the bottom of the flow: the logical tables clients see
//! ([`tables`], with descriptions and keys), the on-disk dataset layout ([`Dataset`]) and the
//! deterministic demo data generator ([`generate`]). Every other crate builds on these names.

mod dataset;
mod error;
mod generator;
mod model;

pub use dataset::{Dataset, DatasetManifest, MANIFEST_FILE};
pub use error::{Error, Result};
pub use generator::{GenerateConfig, generate, user_id};
pub use model::{
    ALBUMS, ARTISTS, CATALOG, ColumnDef, ForeignKey, SCHEMA, STREAMS, TIME_ZONE, TRACKS, TableDef,
    TableKind, streams_schema, table, tables, timestamp_type,
};
