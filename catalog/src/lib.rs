//! The data model of Sluice, at the bottom of the flow: the logical tables clients see
//! ([`tables`], with descriptions and keys), the rollups of `streams` ([`rollups`]), the on-disk dataset layout ([`Dataset`]) and the
//! deterministic demo data generator ([`generate`]). Every other crate builds on these names.

mod dataset;
mod error;
mod generator;
mod model;
mod rollups;

pub use dataset::{Dataset, DatasetManifest, MANIFEST_FILE};
pub use error::{Error, Result};
pub use generator::{GenerateConfig, generate, user_id};
pub use model::{
    ALBUMS, ARTISTS, CATALOG, ColumnDef, ForeignKey, PLAYS_DAILY, PLAYS_MONTHLY_ARTIST,
    PLAYS_MONTHLY_GENRE, SCHEMA, STREAMS, TIME_ZONE, TRACK_FIRST_LAST, TRACKS, TableDef, TableKind,
    streams_schema, table, tables, timestamp_type,
};
pub use rollups::{CatalogKey, RollupDef, RollupGrain, RollupMeasure, month_start_ms, rollups};
