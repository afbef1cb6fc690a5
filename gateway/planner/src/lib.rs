//! The planner: SQL in, a scoped and routed DataFusion plan out. It sits between the Flight
//! SQL service (upstream) and the connectors (downstream). [`QueryEngine`] is the entry
//! point: [`QueryEngine::plan`] turns one statement of one principal into a
//! [`PlannedStatement`], whose [`Query::execute`] streams the result.
//!
//! The route a plan takes is one list, `rules` (`rules/mod.rs`): Sluice's analyzer,
//! logical and physical rules in the order they run among DataFusion's, and the federation
//! step between them, each with why it sits where it does. Each rule has its own file in
//! `rules/`, named after it, with plan-text tests beside it:
//! - `listener_scope`: a listener's `user_id` filter on every user-keyed relation, first;
//! - `catalog_rollup`: an aggregate over `streams` joined with the catalog read from a
//!   rollup kept by catalog attributes (artist, genre) for its whole months;
//! - `eager_aggregate`: an aggregate over `streams` joined with the catalog computed in part
//!   below the joins, so one row per track moves instead of one per play;
//! - `semi_join_distinct`: the `streams` side of `IN`/`NOT IN`/`EXISTS` read as distinct keys;
//! - `aggregate_split`: aggregates over `streams` split into partials per source, with
//!   rollups answering what they cover exactly;
//! - `streams_split`: `streams` as the union of the cold branch (`ts < W`) and the hot
//!   branch (`ts >= W`) at one `W` per query, with branches the time filters rule out not
//!   read;
//! - `top_k_split`: `ORDER BY ... LIMIT k` over the branches: each branch returns its first
//!   `k`;
//! - `catalog_join_placement`, then datafusion-federation (the federation step): catalog
//!   joins placed where they are cheapest, then the parts of the plan a remote engine
//!   (ClickHouse) can run handed to it as SQL;
//! - `catalog_lookup`: in the physical plan, a catalog join on the catalog's key done by
//!   index lookup instead of hashing the catalog;
//! - `listener_rows`: in the physical plan, only the listener's rows passed on by each scan,
//!   before any expression.
//!
//! What the rules share and build on, each in its own module:
//! - `route`: a query's `W` and route settings, and the reads and rollup choices planned
//!   (`QueryScope`, `Route`, `RollupChoice`);
//! - `streams`, `catalog_table`: the tables the SQL planner sees (`streams` over its two
//!   branches; the catalog, with its remote copy and key index);
//! - `streams_input`, `partial_aggregate`, `rollups`, `catalog_rollups`: a read of
//!   `streams` seen through the plan above it, aggregates computed in pieces and merged,
//!   and when a rollup answers exactly;
//! - `scope`, `keyed_catalog`, `source_reads`: the execution nodes the rules place
//!   (`ListenerRowsExec`; `KeyedScanExec`, `CatalogLookupExec`; `SourceReadExec`);
//! - `federation`, `query_planner`: which tables are remote, and the physical planning of
//!   federated plans;
//! - `information_schema`: the tables and columns with their descriptions;
//! - `manifest`: how a result was computed (sources, rollups, `W`), for the client, EXPLAIN
//!   (its `sluice_route` row, `explain`) and the log;
//! - `query_stop`: each run's stop, checked inside its joins, set when its stream is
//!   dropped (a cancel, a timeout, a client gone);
//! - `plan_cache`: routed plans, and their physical plans where running them again is
//!   exact, kept for statements that come again at the same `W`;
//! - `memory`: each query's operator memory, within its principal's limit and the
//!   process's [`MemoryBudget`];
//! - `ingest`: an admin's new events, checked and written to the hot store.

mod catalog_rollups;
mod catalog_table;
mod engine;
mod error;
mod executor;
mod explain;
mod federation;
mod information_schema;
mod ingest;
mod keyed_catalog;
mod manifest;
mod memory;
mod partial_aggregate;
mod placeholders;
mod plan_cache;
mod query_planner;
mod query_stop;
mod rewrite;
mod rollups;
mod route;
mod rules;
mod scope;
mod settings;
mod source_reads;
mod streams;
mod streams_input;
#[cfg(test)]
mod tests;

pub use engine::{PlannedStatement, Query, QueryEngine};
pub use error::{Error, ErrorKind, Result};
pub use executor::QueryExecutor;
pub use information_schema::{ListedTable, listed_tables, sql_type_name};
pub use ingest::IngestTarget;
pub use manifest::{Manifest, ManifestRead, PassedOver};
pub use memory::MemoryBudget;
pub use plan_cache::DEFAULT_PLAN_CACHE_ENTRIES;
pub use settings::SessionSettings;
