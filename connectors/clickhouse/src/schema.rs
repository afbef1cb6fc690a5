//! Sluice's tables in ClickHouse, created by `sluice clickhouse init` on 18.16 and on current
//! servers alike. Chosen for per-listener reads (see `../shared/PEERS.md` and the README):
//!
//! - `streams`: raw events, `ORDER BY (user_id, timestamp_ms)` and *no* partitioning (monthly
//!   partitions made one listener's reads 2–6x slower: every part is a separate index probe).
//! - `plays_daily` (view over `plays_daily_state`, a `SummingMergeTree` by listener, day and
//!   track, fed by a materialized view): plays and time played per day; `day` is the ms of
//!   the day's start.
//! - `track_first_last` (view over `track_first_last_state`, an `AggregatingMergeTree` by
//!   listener and track): first and last play and play count, which makes "my first stream"
//!   and "when did I first hear X" one key lookup.
//! - `plays_monthly_artist`, `plays_monthly_genre` (views over `SummingMergeTree`s by listener,
//!   month and artist or genre, fed by materialized views that join each inserted block with
//!   the catalog copy): the rollups that shrink year-long questions by artist or genre. The
//!   catalog copy must be loaded before the events it describes (`sluice load` does so); an
//!   event whose track is not in it is in neither rollup, as in an inner join.
//! - `tracks`, `artists`, `albums`: the catalog, which the gateway reads at start (a deployment
//!   has no other); ClickHouse joins with `tracks` and `artists` itself. `albums` keeps
//!   `release_date` as days since 1970: 18.16's `Date` starts in 1970 and albums were
//!   released before.
//! - `sluice_watermark`: the loader's record of `W` (the cold store holds every event before it).
//!
//! The rollup views re-aggregate (`sum`, `minMerge`, ...) on every read: background merges are
//! eventual, so stored rows may still be split. The rollups' tables, views and materialized
//! views are derived from their declarations ([`sluice_catalog::RollupDef`]), never written
//! by hand: `tests/golden/clickhouse/schema.sql` shows what the built-in ones become.

use sluice_catalog::{ForeignKey, RollupDef, RollupGrain, RollupMeasure, TRACKS};

/// The raw table of events.
pub const STREAMS_TABLE: &str = "streams";
/// Where the loader records `W`.
pub const WATERMARK_TABLE: &str = "sluice_watermark";

/// How Sluice's tables lie across servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout<'a> {
    /// One server holds everything.
    Single,
    /// Every shard of the `remote_servers` cluster holds the events and rollup rows of its
    /// listeners (`<name>_local`), and a whole copy of the catalog; `Distributed` tables
    /// named like the single-server ones read (and take inserts) across the shards.
    Sharded { cluster: &'a str },
}

impl Layout<'_> {
    /// The table holding a server's part of `table`: itself on one server, `<table>_local`
    /// on a shard.
    pub(crate) fn part(&self, table: &str) -> String {
        match self {
            Layout::Single => table.to_string(),
            Layout::Sharded { .. } => local_name(table),
        }
    }
}

/// The columns of the raw table and of the watermark record, for their parts and for the
/// `Distributed` tables over them.
const STREAMS_COLUMNS: &str =
    "user_id String, track_uri String, timestamp_ms UInt64, ms_played UInt32";
const WATERMARK_COLUMNS: &str = "w_ms Int64, published DateTime";

/// The tables split by listener across the shards of a cluster: the events and the rollups.
/// On a shard, `<name>_local` holds its part; `<name>` reads them all.
pub fn sharded_tables(rollups: &[RollupDef]) -> Vec<&str> {
    std::iter::once(STREAMS_TABLE)
        .chain(rollups.iter().map(|r| r.table))
        .collect()
}

/// A sharded table's part on one shard.
pub(crate) fn local_name(table: &str) -> String {
    format!("{table}_local")
}

/// Which shard a listener's rows live on: `sipHash64(user_id)` (ClickHouse's SipHash-2-4
/// with a zero key), the sharding key of every `Distributed` table.
pub(crate) const SHARDING_KEY: &str = "sipHash64(user_id)";

/// `CREATE ... IF NOT EXISTS` statements, in order (tables before the views that read them):
/// the raw and catalog tables, then each of `rollups` as [`rollup_statements`] derives it.
/// Sharded, the same statements run on every shard.
pub fn create_statements(database: &str, rollups: &[RollupDef], layout: Layout) -> Vec<String> {
    let db = quote(database);
    let streams = layout.part(STREAMS_TABLE);
    let watermark = layout.part(WATERMARK_TABLE);
    let mut statements = vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{streams} ({STREAMS_COLUMNS}) \
             ENGINE = MergeTree() ORDER BY (user_id, timestamp_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.tracks (\
             track_uri String, track_name String, artist_uri String, album_uri String, duration_ms Int64\
             ) ENGINE = MergeTree() ORDER BY track_uri"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.artists (\
             artist_uri String, artist_name String, genre String\
             ) ENGINE = MergeTree() ORDER BY artist_uri"
        ),
        // `release_date` as days since 1970 (negative before): 18.16's `Date` starts in 1970
        // and has no `Date32`.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.albums (\
             album_uri String, album_name String, artist_uri String, release_date Int32\
             ) ENGINE = MergeTree() ORDER BY album_uri"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{watermark} ({WATERMARK_COLUMNS}) \
             ENGINE = MergeTree() ORDER BY w_ms"
        ),
    ];
    if let Layout::Sharded { cluster } = layout {
        statements.push(distributed(
            database,
            cluster,
            STREAMS_TABLE,
            STREAMS_COLUMNS,
            Some(SHARDING_KEY),
        ));
        // One `W` for the cluster: recorded on one shard, read across all of them.
        statements.push(distributed(
            database,
            cluster,
            WATERMARK_TABLE,
            WATERMARK_COLUMNS,
            None,
        ));
    }
    for rollup in rollups {
        statements.extend(rollup_statements(database, rollup, layout));
    }
    statements
}

/// A `Distributed` table `name` over each shard's `<name>_local`; inserts through it go to
/// the shard of `key` (none: it takes no inserts).
fn distributed(
    database: &str,
    cluster: &str,
    name: &str,
    columns: &str,
    key: Option<&str>,
) -> String {
    let db = quote(database);
    let key = key.map(|k| format!(", {k}")).unwrap_or_default();
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{name} ({columns}) ENGINE = Distributed({}, {}, {}{key})",
        literal(cluster),
        literal(database),
        literal(&local_name(name))
    )
}

/// A single-quoted string literal.
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// What ClickHouse keeps for one rollup, from its declaration alone:
///
/// - `<table>_state`: a `SummingMergeTree` when every measure is a sum (plays, time played),
///   else an `AggregatingMergeTree` of aggregate states; ordered by listener, period, keys;
/// - `<table>_mv`: the materialized view that groups each inserted block of events into it;
/// - `<table>`: the view that merges the state rows, with the columns of the table clients
///   see ([`RollupDef::table_def`]), in its order.
///
/// Sharded, the view is `<table>_local` (a shard's listeners), and `<table>` a `Distributed`
/// table over the shards' views: a listener's rows are all on one shard, so each group is
/// whole where it is merged.
fn rollup_statements(database: &str, rollup: &RollupDef, layout: Layout) -> Vec<String> {
    let db = &quote(database);
    let name = rollup.table;
    let summing = summing(rollup);
    let keys = group_columns(rollup);
    let mut state_columns: Vec<String> = keys
        .iter()
        .map(|k| match rollup.grain.column() {
            Some(period) if period == *k => format!("{k} UInt64"),
            _ => format!("{k} String"),
        })
        .collect();
    let mut merged: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    for (measure, column) in rollup.measures() {
        let (state_type, merge) = match (measure, summing) {
            (_, true) => ("UInt64", "sum"),
            (RollupMeasure::FirstTs, false) => ("AggregateFunction(min, UInt64)", "minMerge"),
            (RollupMeasure::LastTs, false) => ("AggregateFunction(max, UInt64)", "maxMerge"),
            (RollupMeasure::Plays, false) => ("AggregateFunction(count)", "countMerge"),
            (RollupMeasure::MsPlayed, false) => ("AggregateFunction(sum, UInt32)", "sumMerge"),
        };
        state_columns.push(format!("{column} {state_type}"));
        merged.push(format!("{merge}({column}) AS {column}"));
    }
    let engine = if summing {
        "SummingMergeTree"
    } else {
        "AggregatingMergeTree"
    };
    let keys = keys.join(", ");
    let view = layout.part(name);
    let mut statements = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{name}_state ({}) ENGINE = {engine}() ORDER BY ({keys})",
            state_columns.join(", ")
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name}_mv TO {db}.{name}_state AS {}",
            rollup_select(db, rollup, layout)
        ),
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.{view} AS SELECT {} FROM {db}.{name}_state \
             GROUP BY {keys}",
            merged.join(", ")
        ),
    ];
    if let Layout::Sharded { cluster } = layout {
        // The merged measures are all UInt64 (sums, counts, min and max of ms).
        let columns: Vec<String> = state_columns
            .iter()
            .map(|c| match c.split_once(' ') {
                Some((column, ty)) if ty.starts_with("AggregateFunction") => {
                    format!("{column} UInt64")
                }
                _ => c.clone(),
            })
            .collect();
        statements.push(distributed(
            database,
            cluster,
            name,
            &columns.join(", "),
            Some(SHARDING_KEY),
        ));
    }
    statements
}

/// Whether every measure of a rollup is a sum (plays, time played): its state rows then sum
/// (`SummingMergeTree`); otherwise they hold aggregate states (`AggregatingMergeTree`).
fn summing(rollup: &RollupDef) -> bool {
    rollup
        .measures()
        .all(|(m, _)| matches!(m, RollupMeasure::Plays | RollupMeasure::MsPlayed))
}

/// A rollup's group columns: `user_id`, the period's, the keys.
fn group_columns(rollup: &RollupDef) -> Vec<&'static str> {
    std::iter::once("user_id")
        .chain(rollup.grain.column())
        .chain(rollup.key_columns().map(|(_, c)| c))
        .collect()
}

/// What the materialized view of a rollup inserts for a block of events (and its backfill
/// for the events already held).
///
/// Periods are the ms of their UTC start, like every time Sluice keeps in ClickHouse: no
/// `Date`, whose range starts in 1970 on 18.16.
///
/// A rollup by catalog keys joins the events with the catalog copy through `ALL INNER JOIN`s
/// of aliased subqueries, which mean the same on 18.16 and on current releases: every event
/// meets the one catalog row of its key (the load checks the copy's keys are unique).
/// `ANY INNER JOIN` does not: since 20.x it keeps one row per key on *both* sides, so a
/// rollup would count each track once instead of each play. Current releases also refuse a
/// joined subquery without an alias. 18.16 takes one JOIN per SELECT, so each catalog table
/// joined beyond `tracks` is a level of subquery. The events are the left side, so each
/// inserted block triggers the view.
fn rollup_select(db: &str, rollup: &RollupDef, layout: Layout) -> String {
    let streams = layout.part(STREAMS_TABLE);
    let period = match rollup.grain {
        RollupGrain::Day { column } => Some(format!(
            "intDiv(timestamp_ms, 86400000) * 86400000 AS {column}"
        )),
        RollupGrain::Month { column } => Some(format!(
            "toUInt64(toDateTime(toStartOfMonth(toDateTime(intDiv(timestamp_ms, 1000), \
             'UTC')), 'UTC')) * 1000 AS {column}"
        )),
        RollupGrain::AllTime => None,
    };
    let summing = summing(rollup);
    let measures = rollup.measures().map(|(measure, column)| {
        let f = match (measure, summing) {
            (RollupMeasure::Plays, true) => "count()",
            (RollupMeasure::MsPlayed, true) => "sum(ms_played)",
            (RollupMeasure::FirstTs, _) => "minState(timestamp_ms)",
            (RollupMeasure::LastTs, _) => "maxState(timestamp_ms)",
            (RollupMeasure::Plays, false) => "countState()",
            (RollupMeasure::MsPlayed, false) => "sumState(ms_played)",
        };
        format!("{f} AS {column}")
    });
    let columns: Vec<String> = std::iter::once("user_id".to_string())
        .chain(period)
        .chain(rollup.key_columns().map(|(_, c)| c.to_string()))
        .chain(measures)
        .collect();
    let join = if rollup.joins.is_empty() {
        String::new()
    } else {
        format!(
            " ALL INNER JOIN {} AS catalog_tracks USING (track_uri)",
            catalog_subquery(db, rollup)
        )
    };
    format!(
        "SELECT {} FROM {db}.{streams}{join} GROUP BY {}",
        columns.join(", "),
        group_columns(rollup).join(", ")
    )
}

/// `tracks` with the catalog columns a rollup keeps, joined along the foreign keys of
/// `tracks` with each other table the rollup declares (checked by [`RollupDef::check`]):
/// `(SELECT track_uri, <keys> FROM tracks ALL INNER JOIN (SELECT <key>, <keys> FROM artists)
/// AS catalog_artists USING (artist_uri))`, one level per table.
fn catalog_subquery(db: &str, rollup: &RollupDef) -> String {
    let tracks = sluice_catalog::table(TRACKS).expect("declared");
    let others: Vec<(&str, &ForeignKey)> = rollup
        .joins
        .iter()
        .filter(|t| **t != TRACKS)
        .filter_map(|t| {
            let fk = tracks
                .foreign_keys
                .iter()
                .find(|k| k.references_table == *t)?;
            Some((*t, fk))
        })
        .collect();
    let keys_of = |table: &str| -> Vec<&str> {
        rollup
            .catalog_keys
            .iter()
            .filter(|k| k.table == table)
            .map(|k| k.column)
            .collect()
    };
    // What a level must pass on: the track, the keys read so far, the columns later levels
    // join on.
    let carried = |level: usize| -> Vec<&str> {
        let mut out = vec!["track_uri"];
        out.extend(keys_of(TRACKS));
        for (t, _) in &others[..level] {
            out.extend(keys_of(t));
        }
        out.extend(others[level..].iter().map(|(_, fk)| fk.column));
        let mut seen = Vec::new();
        out.retain(|c| {
            let new = !seen.contains(c);
            seen.push(*c);
            new
        });
        out
    };
    let mut from = format!("{db}.{TRACKS}");
    for (level, (table, fk)) in others.iter().enumerate() {
        let mut picked = vec![if fk.references_column == fk.column {
            fk.column.to_string()
        } else {
            format!("{} AS {}", fk.references_column, fk.column)
        }];
        picked.extend(
            keys_of(table)
                .into_iter()
                .filter(|k| *k != fk.references_column)
                .map(str::to_string),
        );
        let select = format!(
            "SELECT {} FROM {from} ALL INNER JOIN (SELECT {} FROM {db}.{table}) AS catalog_{table} \
             USING ({})",
            carried(level + 1).join(", "),
            picked.join(", "),
            fk.column
        );
        from = if level + 1 == others.len() {
            format!("({select})")
        } else {
            format!("({select}) AS catalog_tracks_{level}")
        };
    }
    if others.is_empty() {
        from = format!("(SELECT {} FROM {from})", carried(0).join(", "));
    }
    from
}

/// For each rollup: its state table and the statement that fills it from the events already
/// held. A database loaded before the rollup existed (or, for one fed through the catalog
/// copy, with the copy loaded after its events) holds events its view never saw.
/// Sharded, each shard fills its own from its own events.
pub(crate) fn backfill_statements(
    database: &str,
    rollups: &[RollupDef],
    layout: Layout,
) -> Vec<(String, String)> {
    let db = quote(database);
    rollups
        .iter()
        .map(|r| {
            let state = format!("{}_state", r.table);
            let sql = format!("INSERT INTO {db}.{state} {}", rollup_select(&db, r, layout));
            (state, sql)
        })
        .collect()
}

/// A double-quoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use sluice_catalog::{ALBUMS, ARTISTS, CatalogKey, RollupDef, RollupGrain, TRACKS};

    use super::*;

    /// What `sluice clickhouse init` sends, reviewed as a file (`SLUICE_BLESS=1` rewrites it):
    /// the built-in rollups, one declared with two catalog tables beyond `tracks` and
    /// aggregate states, and the built-in ones sharded over a cluster (run on every shard).
    #[test]
    fn the_ddl_is_derived_from_the_declarations() {
        static DECLARED: [RollupDef; 1] = [RollupDef {
            table: "album_artist_first_last",
            description: "First and last play per listener, album and artist.",
            grain: RollupGrain::AllTime,
            keys: &["track_uri"],
            joins: &[TRACKS, ARTISTS, ALBUMS],
            catalog_keys: &[
                CatalogKey {
                    table: ALBUMS,
                    column: "album_name",
                    description: "The album's title.",
                },
                CatalogKey {
                    table: ARTISTS,
                    column: "genre",
                    description: "The artist's genre.",
                },
            ],
            plays: "plays",
            ms_played: Some("ms_played"),
            first_ts: Some("first_ts"),
            last_ts: Some("last_ts"),
        }];
        DECLARED[0].check().unwrap();
        let sharded = Layout::Sharded {
            cluster: "sluice_shards",
        };
        for (name, rollups, layout) in [
            ("schema.sql", sluice_catalog::rollups(), Layout::Single),
            ("declared.sql", &DECLARED[..], Layout::Single),
            ("sharded.sql", sluice_catalog::rollups(), sharded),
        ] {
            let mut got = String::new();
            for sql in create_statements("sluice", rollups, layout) {
                got.push_str(&sql);
                got.push_str(";\n\n");
            }
            for (state, sql) in backfill_statements("sluice", rollups, layout) {
                got.push_str(&format!("-- backfill {state}\n{sql};\n\n"));
            }
            let path = sluice_tests::repo_root()
                .join("tests/golden/schema")
                .join(name);
            if std::env::var_os("SLUICE_BLESS").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &got).unwrap();
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!("{} is missing: SLUICE_BLESS=1 writes it", path.display())
            });
            assert_eq!(
                got, want,
                "{name} changed: SLUICE_BLESS=1 rewrites it; review the diff"
            );
        }
    }
}
