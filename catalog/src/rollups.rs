//! The rollups of `streams`, declared once: what each table's rows hold, so that the planner
//! substitutes any of them for raw events without code of its own per rollup, and every cold
//! store (Parquet, ClickHouse) builds the same ones from the declaration alone: their tables
//! in [`crate::tables`] are derived from it ([`RollupDef::table_def`]), as are ClickHouse's
//! DDL and the embedded builder's groupings.

use arrow::datatypes::DataType;

use crate::error::{Error, Result};
use crate::model::{
    ARTISTS, PLAYS_DAILY, PLAYS_MONTHLY_ARTIST, PLAYS_MONTHLY_GENRE, STREAMS, TRACK_FIRST_LAST,
    TRACKS, TableDef, TableKind, table,
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

const DAY_MS: i64 = 86_400_000;

/// The first ms of the UTC calendar month holding `ms` (`ms` itself outside chrono's range).
pub fn month_start_ms(ms: i64) -> i64 {
    use chrono::{Datelike, NaiveDate};
    chrono::DateTime::from_timestamp_millis(ms)
        .and_then(|t| NaiveDate::from_ymd_opt(t.year(), t.month(), 1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(ms, |d| d.and_utc().timestamp_millis())
}

impl RollupGrain {
    /// The column holding a row's period start, if the rollup keeps time.
    pub fn column(self) -> Option<&'static str> {
        match self {
            Self::Day { column } | Self::Month { column } => Some(column),
            Self::AllTime => None,
        }
    }

    /// The first ms of the UTC period holding `ms` (`ms` itself without time, or outside
    /// chrono's range, where no rollup has rows).
    pub fn period_start(self, ms: i64) -> i64 {
        match self {
            Self::Day { .. } => ms.div_euclid(DAY_MS) * DAY_MS,
            Self::Month { .. } => month_start_ms(ms),
            Self::AllTime => ms,
        }
    }

    /// The first ms of the first whole period starting at or after `ms`.
    pub fn next_period_start(self, ms: i64) -> i64 {
        let start = self.period_start(ms);
        match self {
            _ if start == ms => ms,
            Self::Day { .. } => start + DAY_MS,
            // Any day of the next month, floored.
            Self::Month { .. } => self.period_start(start + 32 * DAY_MS),
            Self::AllTime => ms,
        }
    }
}

/// One rollup: the cold store's events (those before `W`) grouped by `user_id`, the
/// [`Self::keys`] and the grain, with the measures named by the columns holding them.
///
/// Everything else follows from it: the table clients see ([`Self::table_def`]), ClickHouse's
/// state table, materialized view and view, and the embedded default's Parquet file.
#[derive(Debug, Clone)]
pub struct RollupDef {
    /// Its table's name.
    pub table: &'static str,
    /// What its table holds, for clients and agents.
    pub description: &'static str,
    pub grain: RollupGrain,
    /// Text columns of `streams` kept as keys besides `user_id`, by the same names.
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

/// A text column of a catalog table kept as a rollup's key (the rollup's column of the same
/// name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogKey {
    pub table: &'static str,
    pub column: &'static str,
    /// What the rollup's column holds.
    pub description: &'static str,
}

const fn artists(column: &'static str, description: &'static str) -> CatalogKey {
    CatalogKey {
        table: ARTISTS,
        column,
        description,
    }
}

/// What a rollup keeps of each group besides its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupMeasure {
    /// `min(ts)`.
    FirstTs,
    /// `max(ts)`.
    LastTs,
    /// `count(*)`.
    Plays,
    /// `sum(ms_played)`.
    MsPlayed,
}

impl RollupDef {
    /// The measures it keeps with their columns, in its table's order: times, then counts.
    pub fn measures(&self) -> impl Iterator<Item = (RollupMeasure, &'static str)> {
        [
            (RollupMeasure::FirstTs, self.first_ts),
            (RollupMeasure::LastTs, self.last_ts),
            (RollupMeasure::Plays, Some(self.plays)),
            (RollupMeasure::MsPlayed, self.ms_played),
        ]
        .into_iter()
        .filter_map(|(m, column)| Some((m, column?)))
    }

    /// Every key column besides `user_id` and the period: those of `streams`, then those of
    /// the catalog, with the table each comes from.
    pub fn key_columns(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
        let streams = self.keys.iter().map(|k| (STREAMS, *k));
        streams.chain(self.catalog_keys.iter().map(|k| (k.table, k.column)))
    }

    /// The table clients see: `user_id`, the period, the keys and the measures, with
    /// descriptions and keys derived from the declaration.
    pub fn table_def(&self) -> TableDef {
        crate::model::rollup_table(self, crate::tables())
    }

    /// Whether every store can build it: text keys of `streams` and of catalog tables joined
    /// from `tracks` along its foreign keys, and distinct column names.
    pub fn check(&self) -> Result<()> {
        let refuse = |message: String| Error::Rollup {
            table: self.table,
            message,
        };
        let is_name = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !is_name(self.table) {
            return Err(refuse("a name of lower-case letters, digits and _".into()));
        }
        if table(self.table).is_some_and(|t| t.kind == TableKind::Entity) || self.table == STREAMS {
            return Err(refuse("the name of a table Sluice already serves".into()));
        }
        let tracks = table(TRACKS).expect("declared");
        match self.joins {
            [] => {}
            [first, rest @ ..] if *first == TRACKS => {
                if let Some(t) = rest.iter().find(|t| {
                    !tracks
                        .foreign_keys
                        .iter()
                        .any(|k| k.references_table == **t)
                }) {
                    return Err(refuse(format!("tracks has no foreign key to {t}")));
                }
            }
            _ => return Err(refuse("joins start with tracks".into())),
        }
        for (from, column) in self.key_columns() {
            if from != STREAMS && !self.joins.contains(&from) {
                return Err(refuse(format!("{from}.{column}: {from} is not joined")));
            }
            let text = table(from)
                .and_then(|t| t.column(column))
                .is_some_and(|c| c.data_type == DataType::Utf8);
            if !text || (from == STREAMS && column == "user_id") {
                return Err(refuse(format!(
                    "{from}.{column} is not a text column to group by"
                )));
            }
        }
        let mut names: Vec<&str> = std::iter::once("user_id")
            .chain(self.grain.column())
            .chain(self.key_columns().map(|(_, c)| c))
            .chain(self.measures().map(|(_, c)| c))
            .collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(refuse(format!("two columns named {}", w[0])));
        }
        if let Some(bad) = names.iter().find(|n| !is_name(n)) {
            return Err(refuse(format!(
                "column {bad}: lower-case letters, digits and _"
            )));
        }
        Ok(())
    }
}

static ROLLUPS: [RollupDef; 4] = [
    RollupDef {
        table: TRACK_FIRST_LAST,
        description: "Rollup of streams before the watermark W: first and last play and plays \
                      per listener and track. Sluice reads it by itself for whole-history \
                      questions.",
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
        description: "Rollup of streams joined with tracks and artists, before the watermark \
                      W: plays and time played per listener, UTC month and genre. Sluice \
                      reads it by itself for counts by genre over whole months; query it \
                      directly only for months before W.",
        grain: RollupGrain::Month { column: "month" },
        keys: &[],
        joins: &[TRACKS, ARTISTS],
        catalog_keys: &[artists("genre", "The artists' main genre.")],
        plays: "plays",
        ms_played: Some("ms_played"),
        first_ts: None,
        last_ts: None,
    },
    RollupDef {
        table: PLAYS_MONTHLY_ARTIST,
        description: "Rollup of streams joined with tracks and artists, before the watermark \
                      W: plays and time played per listener, UTC month and artist. Sluice \
                      reads it by itself for counts by artist or genre over whole months; \
                      query it directly only for months before W.",
        grain: RollupGrain::Month { column: "month" },
        keys: &[],
        joins: &[TRACKS, ARTISTS],
        // The name and genre depend on the artist: keeping them adds no rows.
        catalog_keys: &[
            artists(
                "artist_uri",
                "The artist of the tracks played; joins artists.artist_uri.",
            ),
            artists("artist_name", "The artist's name."),
            artists("genre", "The artist's main genre."),
        ],
        plays: "plays",
        ms_played: Some("ms_played"),
        first_ts: None,
        last_ts: None,
    },
    RollupDef {
        table: PLAYS_DAILY,
        description: "Rollup of streams before the watermark W: plays and time played per \
                      listener, UTC day and track. Sluice reads it by itself for counts over \
                      whole days; query it directly only for days before W.",
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

    #[test]
    fn periods_start_at_utc_midnight_and_on_the_first_of_the_month() {
        let day = RollupGrain::Day { column: "day" };
        let month = RollupGrain::Month { column: "month" };
        // 2024-02-29T13:00:00Z, 2024-02-01, 2024-03-01 (a leap year), 2024-12-01, 2025-01-01.
        let t = 1_709_211_600_000;
        assert_eq!(day.period_start(t), 1_709_164_800_000);
        assert_eq!(day.next_period_start(t), 1_709_251_200_000);
        assert_eq!(month.period_start(t), 1_706_745_600_000);
        assert_eq!(month.next_period_start(t), 1_709_251_200_000);
        assert_eq!(
            month.next_period_start(1_706_745_600_000),
            1_706_745_600_000
        );
        assert_eq!(
            month.next_period_start(1_733_011_200_001),
            1_735_689_600_000
        );
        assert_eq!(RollupGrain::AllTime.period_start(t), t);
    }
}
