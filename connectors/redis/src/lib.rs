//! Redis as the hot source of `streams`: the most recent events of each listener, read by
//! listener and time range. [`RedisHotStore::connect`] is the entry point; the store is an
//! [`sluice_connector_api::EventSource`] for the planner, a writer for the loader, and the
//! keeper of the watermark `W` ([`RedisWatermark`]).
//!
//! Key layout (every key starts with the configured prefix, `sluice:` by default):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `sluice:{<user_id>}:events` | sorted set | one member per event: score = `ts` in ms, member = `<ts>\|<track_uri>\|<ms_played>` |
//! | `sluice:users` | set | the user ids that have an events key |
//! | `sluice:watermark` | string | `W`, ms since the epoch: every event with `ts >= W` is here |
//!
//! The braces are a Redis Cluster hash tag: all of a listener's events live in one slot. An
//! event is identified by (user, ts, track): writing it again stores nothing new, whatever
//! its `ms_played`. Events may arrive in any order; the score orders them.

mod config;
mod error;
mod keys;
mod scan;
mod store;

pub use config::RedisConfig;
pub use error::{Error, Result};
pub use store::{RedisHotStore, RedisWatermark};
