//! The rollups of `streams`, declared once: what each table's rows hold, so that the planner
//! substitutes any of them for raw events without code of its own per rollup, and every cold
//! store (Parquet, ClickHouse) builds the same ones. Their columns and descriptions are
//! ordinary table declarations in [`crate::tables`].

use crate::model::{PLAYS_DAILY, TRACK_FIRST_LAST};

/// How much of `ts` a rollup keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupGrain {
    /// One row per UTC day; the column holds the day's start, typed like `ts`.
    Day { column: &'static str },
    /// No time key: a row covers every event before `W`.
    AllTime,
}

/// One rollup: the cold store's events (those before `W`) grouped by `user_id`, the
/// [`Self::keys`] and the grain, with the measures named by the columns holding them.
#[derive(Debug, Clone)]
pub struct RollupDef {
    /// Its table (declared in [`crate::tables`]).
    pub table: &'static str,
    pub grain: RollupGrain,
    /// Columns of `streams` kept as keys besides `user_id`, by the same names.
    pub keys: &'static [&'static str],
    /// `count(*)`.
    pub plays: &'static str,
    /// `sum(ms_played)`, if kept.
    pub ms_played: Option<&'static str>,
    /// `min(ts)` and `max(ts)`, if kept.
    pub first_ts: Option<&'static str>,
    pub last_ts: Option<&'static str>,
}

static ROLLUPS: [RollupDef; 2] = [
    RollupDef {
        table: TRACK_FIRST_LAST,
        grain: RollupGrain::AllTime,
        keys: &["track_uri"],
        plays: "plays",
        ms_played: None,
        first_ts: Some("first_ts"),
        last_ts: Some("last_ts"),
    },
    RollupDef {
        table: PLAYS_DAILY,
        grain: RollupGrain::Day { column: "day" },
        keys: &["track_uri"],
        plays: "plays",
        ms_played: Some("ms_played"),
        first_ts: None,
        last_ts: None,
    },
];

/// Every rollup, fewest rows per listener first (the order the planner tries them in).
pub fn rollups() -> &'static [RollupDef] {
    &ROLLUPS
}
