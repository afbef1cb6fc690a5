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
//! eventual, so stored rows may still be split.

/// The raw table of events.
pub const STREAMS_TABLE: &str = "streams";
/// Where the loader records `W`.
pub const WATERMARK_TABLE: &str = "sluice_watermark";

/// `CREATE ... IF NOT EXISTS` statements, in order (tables before the views that read them).
pub fn create_statements(database: &str) -> Vec<String> {
    let db = quote(database);
    // A day as the ms of its start (UTC), like every time Sluice keeps in ClickHouse: no
    // `Date`, whose range starts in 1970 on 18.16.
    let day = "intDiv(timestamp_ms, 86400000) * 86400000";
    let monthly = |name: &str, keys: &str| {
        [
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.{name}_state (user_id String, month UInt64, \
                 {}, plays UInt64, ms_played UInt64\
                 ) ENGINE = SummingMergeTree() ORDER BY (user_id, month, {keys})",
                keys.split(", ")
                    .map(|k| format!("{k} String"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name}_mv TO {db}.{name}_state AS {}",
                monthly_select(&db, keys)
            ),
            format!(
                "CREATE VIEW IF NOT EXISTS {db}.{name} AS \
                 SELECT user_id, month, {keys}, sum(plays) AS plays, sum(ms_played) AS ms_played \
                 FROM {db}.{name}_state GROUP BY user_id, month, {keys}"
            ),
        ]
    };
    let mut statements = vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.streams (\
             user_id String, track_uri String, timestamp_ms UInt64, ms_played UInt32\
             ) ENGINE = MergeTree() ORDER BY (user_id, timestamp_ms)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.plays_daily_state (\
             user_id String, day UInt64, track_uri String, plays UInt64, ms_played UInt64\
             ) ENGINE = SummingMergeTree() ORDER BY (user_id, day, track_uri)"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.plays_daily_mv TO {db}.plays_daily_state AS \
             SELECT user_id, {day} AS day, track_uri, count() AS plays, sum(ms_played) AS ms_played \
             FROM {db}.streams GROUP BY user_id, day, track_uri"
        ),
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.plays_daily AS \
             SELECT user_id, day, track_uri, sum(plays) AS plays, sum(ms_played) AS ms_played \
             FROM {db}.plays_daily_state GROUP BY user_id, day, track_uri"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.track_first_last_state (\
             user_id String, track_uri String, \
             first_ms AggregateFunction(min, UInt64), last_ms AggregateFunction(max, UInt64), \
             plays AggregateFunction(count)\
             ) ENGINE = AggregatingMergeTree() ORDER BY (user_id, track_uri)"
        ),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.track_first_last_mv TO {db}.track_first_last_state AS \
             SELECT user_id, track_uri, minState(timestamp_ms) AS first_ms, \
             maxState(timestamp_ms) AS last_ms, countState() AS plays \
             FROM {db}.streams GROUP BY user_id, track_uri"
        ),
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.track_first_last AS \
             SELECT user_id, track_uri, minMerge(first_ms) AS first_ts, maxMerge(last_ms) AS last_ts, \
             countMerge(plays) AS plays \
             FROM {db}.track_first_last_state GROUP BY user_id, track_uri"
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
            "CREATE TABLE IF NOT EXISTS {db}.{WATERMARK_TABLE} (\
             w_ms Int64, published DateTime\
             ) ENGINE = MergeTree() ORDER BY w_ms"
        ),
    ];
    for (name, keys) in monthly_by_catalog() {
        statements.extend(monthly(name, &keys));
    }
    statements
}

/// The rollups declared with joins to the catalog ([`sluice_catalog::rollups`]; all are
/// monthly, through tracks and artists, as [`monthly_select`] builds them): name and catalog
/// keys, as a column list.
fn monthly_by_catalog() -> impl Iterator<Item = (&'static str, String)> {
    sluice_catalog::rollups()
        .iter()
        .filter(|r| !r.joins.is_empty())
        .map(|r| {
            let keys: Vec<&str> = r.catalog_keys.iter().map(|k| k.column).collect();
            (r.table, keys.join(", "))
        })
}

/// What the materialized view of a monthly rollup by catalog keys inserts for a block of
/// events.
///
/// The joins are `ALL INNER JOIN` with an aliased subquery, which means the same on 18.16 and
/// on current releases: every event meets the one catalog row of its key (the load checks
/// the copy's keys are unique). `ANY INNER JOIN` does not: since 20.x it keeps one row per
/// key on *both* sides, so a rollup would count each track once instead of each play.
/// Current releases also refuse a joined subquery without an alias. 18.16 takes one JOIN
/// per SELECT: tracks with artists in a subquery. The events are the left side, so each
/// inserted block triggers the view.
fn monthly_select(db: &str, keys: &str) -> String {
    let month = "toUInt64(toDateTime(toStartOfMonth(toDateTime(intDiv(timestamp_ms, 1000), \
                 'UTC')), 'UTC')) * 1000";
    format!(
        "SELECT user_id, {month} AS month, {keys}, count() AS plays, \
         sum(ms_played) AS ms_played FROM {db}.streams ALL INNER JOIN \
         (SELECT track_uri, artist_uri, artist_name, genre FROM {db}.tracks ALL INNER JOIN \
         (SELECT artist_uri, artist_name, genre FROM {db}.artists) AS catalog_artists \
         USING (artist_uri)) AS catalog_tracks \
         USING (track_uri) GROUP BY user_id, month, {keys}"
    )
}

/// For each rollup fed through a join with the catalog copy: its table and the statement
/// that fills it from the events already held. A database loaded before the rollup existed
/// (or with its catalog copy loaded after its events) holds events the view never saw.
pub(crate) fn backfill_statements(database: &str) -> Vec<(String, String)> {
    let db = quote(database);
    monthly_by_catalog()
        .map(|(name, keys)| {
            let state = format!("{name}_state");
            let sql = format!("INSERT INTO {db}.{state} {}", monthly_select(&db, &keys));
            (state, sql)
        })
        .collect()
}

/// A double-quoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
