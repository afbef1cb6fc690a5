//! The planner: SQL in, a scoped and routed DataFusion plan out. It sits between the Flight
//! SQL service (upstream) and the connectors (downstream). [`QueryEngine`] is the entry
//! point: [`QueryEngine::plan`] turns one statement of one principal into a
//! [`PlannedStatement`], whose [`Query::execute`] streams the result.
//!
//! Steps, each in its own module:
//! - `scope`: a listener's `user_id` filter on every user-keyed relation, first (and, in the
//!   physical plan, only the listener's rows passed on by each scan, before any expression);
//! - `catalog_rollups`: an aggregate over `streams` joined with the catalog read from a rollup
//!   kept by catalog attributes (artist, genre) for its whole months;
//! - `eager_aggregate`: an aggregate over `streams` joined with the catalog computed in part
//!   below the joins, so one row per track moves instead of one per play;
//! - `semi_join`: the `streams` side of `IN`/`NOT IN`/`EXISTS` read as distinct keys;
//! - `rollups`: aggregates over `streams` split into partials per source, with rollups
//!   answering what they cover exactly;
//! - `streams`: `streams` as the union of the cold branch (`ts < W`) and the hot branch
//!   (`ts >= W`) at one `W` per query, with branches the time filters rule out not read;
//! - `topk`: `ORDER BY ... LIMIT k` over the branches: each branch returns its first `k`;
//! - `federation`: catalog joins placed where they are cheapest, then the parts of the plan a
//!   remote engine (ClickHouse) can run handed to it as SQL (datafusion-federation);
//! - `catalog_lookup`: in the physical plan, a catalog join on the catalog's key done by
//!   index lookup instead of hashing the catalog;
//! - `information_schema`: the tables and columns with their descriptions;
//! - `manifest`: how a result was computed (sources, rollups, `W`), for the client, EXPLAIN
//!   and the log;
//! - `plan_cache`: routed plans, and their physical plans where running them again is
//!   exact, kept for statements that come again at the same `W`;
//! - `source_reads`: what each source returned, counted when the plan runs;
//! - `memory`: each query's operator memory, within its principal's limit and the
//!   process's [`MemoryBudget`];
//! - `ingest`: an admin's new events, checked and written to the hot store.

mod catalog_lookup;
mod catalog_rollups;
mod eager_aggregate;
mod engine;
mod error;
mod executor;
mod federation;
mod information_schema;
mod ingest;
mod manifest;
mod memory;
mod placeholders;
mod plan_cache;
mod rewrite;
mod rollups;
mod scope;
mod semi_join;
mod settings;
mod source_reads;
mod streams;
#[cfg(test)]
mod tests;
mod topk;

pub use engine::{PlannedStatement, Query, QueryEngine};
pub use error::{Error, ErrorKind, Result};
pub use executor::QueryExecutor;
pub use information_schema::{ListedTable, listed_tables, sql_type_name};
pub use ingest::IngestTarget;
pub use manifest::{Manifest, ManifestRead, PassedOver};
pub use memory::MemoryBudget;
pub use plan_cache::DEFAULT_PLAN_CACHE_ENTRIES;
pub use settings::SessionSettings;
