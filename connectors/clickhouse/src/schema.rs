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
//! - `tracks`, `artists`: the catalog copy, for joins ClickHouse runs itself. `albums` stays in
//!   the gateway only: 18.16's `Date` starts in 1970 and albums were released before.
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
    vec![
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
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{WATERMARK_TABLE} (\
             w_ms Int64, published DateTime\
             ) ENGINE = MergeTree() ORDER BY w_ms"
        ),
    ]
}

/// A double-quoted identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
