//! The logical schema: the tables and columns clients see, with the descriptions agents read.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::rollups::{RollupDef, RollupGrain, RollupMeasure};

/// The one catalog Sluice serves.
pub const CATALOG: &str = "sluice";
/// The one schema of [`CATALOG`] holding the data tables.
pub const SCHEMA: &str = "public";
/// The time zone of every timestamp Sluice serves.
pub const TIME_ZONE: &str = "UTC";

/// Whether rows of a table belong to one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Rows carry a `user_id`; a listener sees only its own.
    UserKeyed,
    /// Shared metadata (tracks, artists, albums); everyone sees all of it.
    Entity,
}

/// One column of a logical table.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub name: &'static str,
    pub data_type: DataType,
    pub nullable: bool,
    pub description: &'static str,
}

/// A foreign key from a column of one table to the primary key of another.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub column: &'static str,
    pub references_table: &'static str,
    pub references_column: &'static str,
}

/// One logical table: name, description, columns and keys.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: TableKind,
    pub columns: Vec<ColumnDef>,
    pub primary_key: Vec<&'static str>,
    pub foreign_keys: Vec<ForeignKey>,
    schema: SchemaRef,
}

impl TableDef {
    fn new(
        name: &'static str,
        description: &'static str,
        kind: TableKind,
        columns: Vec<ColumnDef>,
        primary_key: Vec<&'static str>,
        foreign_keys: Vec<ForeignKey>,
    ) -> Self {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(c.name, c.data_type.clone(), c.nullable))
            .collect();
        Self {
            name,
            description,
            kind,
            columns,
            primary_key,
            foreign_keys,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The Arrow schema of the table as every source serves it (no field metadata).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

fn col(
    name: &'static str,
    data_type: DataType,
    nullable: bool,
    description: &'static str,
) -> ColumnDef {
    ColumnDef {
        name,
        data_type,
        nullable,
        description,
    }
}

fn fk(column: &'static str, table: &'static str, references: &'static str) -> ForeignKey {
    ForeignKey {
        column,
        references_table: table,
        references_column: references,
    }
}

/// The Arrow type of `streams.ts`: milliseconds in UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(TIME_ZONE.into()))
}

static TABLES: LazyLock<Vec<TableDef>> = LazyLock::new(|| {
    let data = vec![
        TableDef::new(
            STREAMS,
            "Every listening event (one row per play), recent and historical together. \
             A listener sees only its own rows. Join track_uri with tracks for names, \
             artists and albums.",
            TableKind::UserKeyed,
            vec![
                col(
                    "user_id",
                    DataType::Utf8,
                    false,
                    "The listener who played the track.",
                ),
                col(
                    "track_uri",
                    DataType::Utf8,
                    false,
                    "The track played; joins tracks.track_uri.",
                ),
                col(
                    "ts",
                    timestamp_type(),
                    false,
                    "When the play started (UTC, millisecond precision).",
                ),
                col(
                    "ms_played",
                    DataType::Int64,
                    false,
                    "How long the track was played, in milliseconds; well below \
                     tracks.duration_ms means the listener skipped it.",
                ),
            ],
            vec![],
            vec![fk("track_uri", TRACKS, "track_uri")],
        ),
        TableDef::new(
            TRACKS,
            "Track metadata from the entity catalog, shared by all listeners.",
            TableKind::Entity,
            vec![
                col(
                    "track_uri",
                    DataType::Utf8,
                    false,
                    "Track identifier, e.g. spotify:track:...",
                ),
                col("track_name", DataType::Utf8, false, "Track title."),
                col(
                    "artist_uri",
                    DataType::Utf8,
                    false,
                    "The performing artist; joins artists.artist_uri.",
                ),
                col(
                    "album_uri",
                    DataType::Utf8,
                    false,
                    "The album the track is on; joins albums.album_uri.",
                ),
                col(
                    "duration_ms",
                    DataType::Int64,
                    false,
                    "Length of the track in milliseconds.",
                ),
            ],
            vec!["track_uri"],
            vec![
                fk("artist_uri", ARTISTS, "artist_uri"),
                fk("album_uri", ALBUMS, "album_uri"),
            ],
        ),
        TableDef::new(
            ARTISTS,
            "Artist metadata from the entity catalog, shared by all listeners.",
            TableKind::Entity,
            vec![
                col(
                    "artist_uri",
                    DataType::Utf8,
                    false,
                    "Artist identifier, e.g. spotify:artist:...",
                ),
                col("artist_name", DataType::Utf8, false, "Artist name."),
                col(
                    "genre",
                    DataType::Utf8,
                    false,
                    "The artist's main genre, e.g. 'indie rock'.",
                ),
            ],
            vec!["artist_uri"],
            vec![],
        ),
        TableDef::new(
            ALBUMS,
            "Album metadata from the entity catalog, shared by all listeners.",
            TableKind::Entity,
            vec![
                col(
                    "album_uri",
                    DataType::Utf8,
                    false,
                    "Album identifier, e.g. spotify:album:...",
                ),
                col("album_name", DataType::Utf8, false, "Album title."),
                col(
                    "artist_uri",
                    DataType::Utf8,
                    false,
                    "The album's artist; joins artists.artist_uri.",
                ),
                col(
                    "release_date",
                    DataType::Date32,
                    false,
                    "Day the album was released.",
                ),
            ],
            vec!["album_uri"],
            vec![fk("artist_uri", ARTISTS, "artist_uri")],
        ),
    ];
    // The rollups' tables by name, after the data they roll up.
    let mut rollups: Vec<_> = crate::rollups()
        .iter()
        .map(|r| rollup_table(r, &data))
        .collect();
    rollups.sort_by_key(|t| t.name);
    data.into_iter().chain(rollups).collect()
});

/// The table of a rollup, from its declaration: `user_id`, the period's start, the keys (as
/// typed and described where they come from, or by the declaration), then the measures.
/// Its primary key leaves out catalog keys that depend on another kept key (an artist's name
/// beside its URI); a key that is its table's primary key, or a foreign key of `streams`,
/// keeps that foreign key.
pub(crate) fn rollup_table(def: &RollupDef, data: &[TableDef]) -> TableDef {
    // What a measure covers, per grain: day, month, everything before W.
    let at = |of: [&'static str; 3]| match def.grain {
        RollupGrain::Day { .. } => of[0],
        RollupGrain::Month { .. } => of[1],
        RollupGrain::AllTime => of[2],
    };
    // `data`: the tables rolled up and joined (not `tables()`, which is built from this).
    let source = |table_name: &str, column: &str| {
        let t = data.iter().find(|t| t.name == table_name)?;
        Some((t, t.column(column)?))
    };
    let mut columns = vec![col("user_id", DataType::Utf8, false, "The listener.")];
    let mut primary_key = vec!["user_id"];
    let mut foreign_keys = Vec::new();
    match def.grain {
        RollupGrain::Day { column } => {
            columns.push(col(
                column,
                timestamp_type(),
                false,
                "Start of the UTC day (midnight).",
            ));
            primary_key.push(column);
        }
        RollupGrain::Month { column } => {
            columns.push(col(
                column,
                timestamp_type(),
                false,
                "Start of the UTC month (midnight of its first day).",
            ));
            primary_key.push(column);
        }
        RollupGrain::AllTime => {}
    }
    for key in def.keys {
        let Some((streams, c)) = source(STREAMS, key) else {
            continue; // refused by `RollupDef::check`
        };
        columns.push(col(key, c.data_type.clone(), false, c.description));
        primary_key.push(key);
        foreign_keys.extend(
            streams
                .foreign_keys
                .iter()
                .filter(|f| f.column == *key)
                .cloned(),
        );
    }
    for key in def.catalog_keys {
        let Some((from, c)) = source(key.table, key.column) else {
            continue;
        };
        columns.push(col(key.column, c.data_type.clone(), false, key.description));
        let is_table_key = from.primary_key == [key.column];
        let depends = def
            .catalog_keys
            .iter()
            .any(|k| k.table == key.table && from.primary_key == [k.column]);
        if is_table_key || !depends {
            primary_key.push(key.column);
        }
        if is_table_key {
            foreign_keys.push(fk(key.column, from.name, key.column));
        }
    }
    for (measure, column) in def.measures() {
        let (data_type, description) = match measure {
            RollupMeasure::FirstTs => (
                timestamp_type(),
                at([
                    "First play that day.",
                    "First play that month.",
                    "First play before W.",
                ]),
            ),
            RollupMeasure::LastTs => (
                timestamp_type(),
                at([
                    "Last play that day.",
                    "Last play that month.",
                    "Last play before W.",
                ]),
            ),
            RollupMeasure::Plays => (
                DataType::Int64,
                at(["Plays that day.", "Plays that month.", "Plays before W."]),
            ),
            RollupMeasure::MsPlayed => (
                DataType::Int64,
                at([
                    "Milliseconds played that day.",
                    "Milliseconds played that month.",
                    "Milliseconds played before W.",
                ]),
            ),
        };
        columns.push(col(column, data_type, false, description));
    }
    TableDef::new(
        def.table,
        def.description,
        TableKind::UserKeyed,
        columns,
        primary_key,
        foreign_keys,
    )
}

/// Name of the listening-events table.
pub const STREAMS: &str = "streams";
/// Name of the tracks table.
pub const TRACKS: &str = "tracks";
/// Name of the artists table.
pub const ARTISTS: &str = "artists";
/// Name of the albums table.
pub const ALBUMS: &str = "albums";
/// Name of the daily rollup by track.
pub const PLAYS_DAILY: &str = "plays_daily";
/// Name of the first/last rollup by track.
pub const TRACK_FIRST_LAST: &str = "track_first_last";
/// Name of the monthly rollup by artist.
pub const PLAYS_MONTHLY_ARTIST: &str = "plays_monthly_artist";
/// Name of the monthly rollup by genre.
pub const PLAYS_MONTHLY_GENRE: &str = "plays_monthly_genre";

/// Every logical table of `sluice.public`, in a stable order.
pub fn tables() -> &'static [TableDef] {
    &TABLES
}

/// The logical table called `name` (exact, lower-case), if any.
pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

/// The schema of `streams`.
pub fn streams_schema() -> SchemaRef {
    table(STREAMS).expect("streams is declared").schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_real_columns() {
        for t in tables() {
            for k in &t.primary_key {
                assert!(t.column(k).is_some(), "{}.{k}", t.name);
            }
            for f in &t.foreign_keys {
                assert!(t.column(f.column).is_some(), "{}.{}", t.name, f.column);
                let other = table(f.references_table).expect("referenced table exists");
                assert!(other.column(f.references_column).is_some());
                assert!(other.primary_key.contains(&f.references_column));
            }
        }
    }

    #[test]
    fn user_keyed_tables_are_streams_and_its_rollups_and_have_user_id() {
        let keyed: Vec<_> = tables()
            .iter()
            .filter(|t| t.kind == TableKind::UserKeyed)
            .map(|t| t.name)
            .collect();
        assert_eq!(
            keyed,
            vec![
                STREAMS,
                PLAYS_DAILY,
                PLAYS_MONTHLY_ARTIST,
                PLAYS_MONTHLY_GENRE,
                TRACK_FIRST_LAST
            ]
        );
        for name in keyed {
            assert!(table(name).unwrap().column("user_id").is_some());
        }
    }

    /// The rollups' tables as clients have always seen them, now derived from the
    /// declarations: columns in order with their types, primary and foreign keys.
    #[test]
    fn rollup_tables_derive_from_their_declarations() {
        let shape = |name: &str| {
            let t = table(name).unwrap();
            let columns: Vec<String> = t
                .columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.data_type))
                .collect();
            let fks: Vec<String> = t
                .foreign_keys
                .iter()
                .map(|f| {
                    format!(
                        "{}->{}.{}",
                        f.column, f.references_table, f.references_column
                    )
                })
                .collect();
            (columns.join(", "), t.primary_key.join(", "), fks.join(", "))
        };
        let ts = "Timestamp(ms, \"UTC\")";
        assert_eq!(
            shape(PLAYS_DAILY),
            (
                format!("user_id Utf8, day {ts}, track_uri Utf8, plays Int64, ms_played Int64"),
                "user_id, day, track_uri".into(),
                "track_uri->tracks.track_uri".into()
            )
        );
        assert_eq!(
            shape(TRACK_FIRST_LAST),
            (
                format!("user_id Utf8, track_uri Utf8, first_ts {ts}, last_ts {ts}, plays Int64"),
                "user_id, track_uri".into(),
                "track_uri->tracks.track_uri".into()
            )
        );
        assert_eq!(
            shape(PLAYS_MONTHLY_ARTIST),
            (
                format!(
                    "user_id Utf8, month {ts}, artist_uri Utf8, artist_name Utf8, genre Utf8, \
                     plays Int64, ms_played Int64"
                ),
                "user_id, month, artist_uri".into(),
                "artist_uri->artists.artist_uri".into()
            )
        );
        assert_eq!(
            shape(PLAYS_MONTHLY_GENRE),
            (
                format!("user_id Utf8, month {ts}, genre Utf8, plays Int64, ms_played Int64"),
                "user_id, month, genre".into(),
                String::new()
            )
        );
        let plays = table(PLAYS_MONTHLY_GENRE).unwrap().column("plays").unwrap();
        assert_eq!(plays.description, "Plays that month.");
        let first = table(TRACK_FIRST_LAST).unwrap().column("first_ts").unwrap();
        assert_eq!(first.description, "First play before W.");
    }

    #[test]
    fn a_rollup_no_store_can_build_is_refused_by_name() {
        for r in crate::rollups() {
            r.check().unwrap();
        }
        let base = crate::rollups()[3].clone();
        let refused = |def: crate::RollupDef| def.check().unwrap_err().to_string();
        assert_eq!(
            refused(crate::RollupDef {
                keys: &["ts"],
                ..base.clone()
            }),
            "rollup plays_daily: streams.ts is not a text column to group by"
        );
        assert_eq!(
            refused(crate::RollupDef {
                table: TRACKS,
                ..base.clone()
            }),
            "rollup tracks: the name of a table Sluice already serves"
        );
        assert_eq!(
            refused(crate::RollupDef {
                ms_played: Some("plays"),
                ..base.clone()
            }),
            "rollup plays_daily: two columns named plays"
        );
        assert_eq!(
            refused(crate::RollupDef {
                joins: &[ARTISTS],
                ..base
            }),
            "rollup plays_daily: joins start with tracks"
        );
    }

    #[test]
    fn every_rollup_is_a_declared_table_with_its_columns() {
        for r in crate::rollups() {
            let t = table(r.table).unwrap();
            let kept = r
                .keys
                .iter()
                .copied()
                .chain([r.plays])
                .chain([r.ms_played, r.first_ts, r.last_ts].into_iter().flatten());
            for c in kept {
                assert!(t.column(c).is_some(), "{}.{c}", r.table);
            }
            if let Some(column) = r.grain.column() {
                assert_eq!(t.column(column).unwrap().data_type, timestamp_type());
            }
            for k in r.catalog_keys {
                assert!(t.column(k.column).is_some(), "{}.{}", r.table, k.column);
                assert!(r.joins.contains(&k.table), "{}: {k:?}", r.table);
                assert!(table(k.table).unwrap().column(k.column).is_some());
            }
        }
    }
}
