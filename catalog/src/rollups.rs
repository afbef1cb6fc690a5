//! The rollups of `streams`, declared once: what each table's rows hold, so that the planner
//! substitutes any of them for raw events without code of its own per rollup, and every cold
//! store (Parquet, ClickHouse) builds the same ones. Their columns and descriptions are
//! ordinary table declarations in [`crate::tables`].

use crate::model::{
    ARTISTS, PLAYS_DAILY, PLAYS_MONTHLY_ARTIST, PLAYS_MONTHLY_GENRE, TRACK_FIRST_LAST, TRACKS,
};

/// How much of `ts` a rollup keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupGrain {
    /// One row per UTC day; the column holds the day's start, typed like `ts`.
    Day { column: &'static str },
    /// One row per UTC calendar month; the column holds the month's start, typed like `ts`.
    Month { column: &'static str },
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
    /// Catalog tables the events were joined with (inner joins along the catalog's foreign
    /// keys from `streams.track_uri`: tracks, then artists) before grouping. Empty for a
    /// rollup of `streams` alone. Such a rollup answers only queries with the same joins: an
    /// event whose track is missing from the catalog is in neither.
    pub joins: &'static [&'static str],
    /// Columns of the joined catalog tables kept as keys, each by its own name.
    pub catalog_keys: &'static [CatalogKey],
    /// `count(*)`.
    pub plays: &'static str,
    /// `sum(ms_played)`, if kept.
    pub ms_played: Option<&'static str>,
    /// `min(ts)` and `max(ts)`, if kept.
    pub first_ts: Option<&'static str>,
    pub last_ts: Option<&'static str>,
}

/// A column of a catalog table kept as a rollup's key (the rollup's column of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogKey {
    pub table: &'static str,
    pub column: &'static str,
}

const fn artists(column: &'static str) -> CatalogKey {
    CatalogKey {
        table: ARTISTS,
        column,
    }
}

static ROLLUPS: [RollupDef; 4] = [
    RollupDef {
        table: TRACK_FIRST_LAST,
        grain: RollupGrain::AllTime,
        keys: &["track_uri"],
        joins: &[],
        catalog_keys: &[],
        plays: "plays",
        ms_played: None,
        first_ts: Some("first_ts"),
        last_ts: Some("last_ts"),
    },
    // Coarse keys at a coarse grain: where year-long questions by artist or genre shrink
    // (a listener plays each artist many times a month; the daily rollup by track barely
    // groups anything, see `../shared/PEERS.md`).
    RollupDef {
        table: PLAYS_MONTHLY_GENRE,
        grain: RollupGrain::Month { column: "month" },
        keys: &[],
        joins: &[TRACKS, ARTISTS],
        catalog_keys: &[artists("genre")],
        plays: "plays",
        ms_played: Some("ms_played"),
        first_ts: None,
        last_ts: None,
    },
    RollupDef {
        table: PLAYS_MONTHLY_ARTIST,
        grain: RollupGrain::Month { column: "month" },
        keys: &[],
        joins: &[TRACKS, ARTISTS],
        // The name and genre depend on the artist: keeping them adds no rows.
        catalog_keys: &[
            artists("artist_uri"),
            artists("artist_name"),
            artists("genre"),
        ],
        plays: "plays",
        ms_played: Some("ms_played"),
        first_ts: None,
        last_ts: None,
    },
    RollupDef {
        table: PLAYS_DAILY,
        grain: RollupGrain::Day { column: "day" },
        keys: &["track_uri"],
        joins: &[],
        catalog_keys: &[],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::table;

    #[test]
    fn rollups_name_declared_columns() {
        for r in rollups() {
            let t = table(r.table).expect("declared");
            let time = match r.grain {
                RollupGrain::Day { column } | RollupGrain::Month { column } => Some(column),
                RollupGrain::AllTime => None,
            };
            let named = ["user_id", r.plays]
                .into_iter()
                .chain(time)
                .chain(r.keys.iter().copied())
                .chain(r.catalog_keys.iter().map(|k| k.column))
                .chain(r.ms_played)
                .chain(r.first_ts)
                .chain(r.last_ts);
            for c in named {
                assert!(t.column(c).is_some(), "{}.{c}", r.table);
            }
            for k in r.catalog_keys {
                assert!(r.joins.contains(&k.table), "{}: {k:?}", r.table);
                assert!(table(k.table).unwrap().column(k.column).is_some());
            }
        }
    }
}
