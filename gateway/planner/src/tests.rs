//! Planner behaviour on small in-memory sources: the hot/cold contract at `W`, branch
//! pruning, and the listener scope.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use sluice_auth::{Principal, Role};
use sluice_catalog::TIME_ZONE;
use sluice_connector_api::{FixedWatermark, Sources};
use sluice_connector_embedded::MemoryHotStore;

use crate::route::RouteBranch;
use crate::{PlannedStatement, QueryEngine, SessionSettings};

const W: i64 = 1_000_000;

fn events(rows: &[(&str, &str, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        sluice_catalog::streams_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2))
                    .with_timezone(TIME_ZONE),
            ),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|_| 1000))),
        ],
    )
    .unwrap()
}

/// Cold holds everything before W plus one event after it (not yet trimmed... from the
/// other side: loaded but W not advanced); hot holds everything from W on plus one older
/// event kept for the grace period. Each event must be counted exactly once.
/// Rollup tables by name with their declarations, in the declared order (fewest rows first).
fn declared(
    tables: Vec<(String, Arc<dyn datafusion::catalog::TableProvider>)>,
) -> Vec<(
    &'static sluice_catalog::RollupDef,
    Arc<dyn datafusion::catalog::TableProvider>,
)> {
    sluice_catalog::rollups()
        .iter()
        .filter_map(|def| {
            let (_, table) = tables.iter().find(|(n, _)| n == def.table)?;
            Some((def, Arc::clone(table)))
        })
        .collect()
}

pub(crate) fn engine() -> QueryEngine {
    let cold = MemoryHotStore::new();
    cold.append(&events(&[
        ("a", "t1", 10),
        ("a", "t2", W - 1),
        ("b", "t1", 20),
        ("a", "t9", W + 5), // beyond W: the hot store's
    ]))
    .unwrap();
    let hot = MemoryHotStore::new();
    hot.append(&events(&[
        ("a", "t2", W - 1), // older than W, kept for the grace period: the cold store's
        ("a", "t3", W),     // exactly at W: hot
        ("a", "t9", W + 5),
        ("b", "t2", W + 7),
    ]))
    .unwrap();
    QueryEngine::new(Sources {
        hot: Arc::new(hot),
        cold: Arc::new(cold),
        watermark: Arc::new(FixedWatermark(W)),
        entities: vec![],
        remote_entities: vec![],
        rollups: vec![],
    })
    .unwrap()
}

async fn run(engine: &QueryEngine, who: &Principal, sql: &str) -> (String, Vec<RouteBranch>) {
    let PlannedStatement::Query(query) = engine
        .plan(who, &SessionSettings::default(), sql)
        .await
        .unwrap()
    else {
        panic!("not a query: {sql}")
    };
    let (stream, manifest) = query.execute().await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    let branches = manifest
        .reads
        .iter()
        .map(|r| match r.branch {
            "cold" => RouteBranch::Cold,
            _ => RouteBranch::Hot,
        })
        .collect();
    (
        pretty_format_batches(&batches).unwrap().to_string(),
        branches,
    )
}

pub(crate) fn analyst() -> Principal {
    Principal::new("analyst", Role::Analyst, None)
}

#[tokio::test]
async fn each_event_once_across_the_watermark() {
    let e = engine();
    let (out, routes) = run(
        &e,
        &analyst(),
        "SELECT user_id, track_uri, CAST(ts AS BIGINT) AS ms FROM streams ORDER BY ms, user_id",
    )
    .await;
    let expected = [
        "+---------+-----------+---------+",
        "| user_id | track_uri | ms      |",
        "+---------+-----------+---------+",
        "| a       | t1        | 10      |",
        "| b       | t1        | 20      |",
        "| a       | t2        | 999999  |",
        "| a       | t3        | 1000000 |",
        "| a       | t9        | 1000005 |",
        "| b       | t2        | 1000007 |",
        "+---------+-----------+---------+",
    ]
    .join("\n");
    assert_eq!(out, expected);
    assert_eq!(routes, vec![RouteBranch::Cold, RouteBranch::Hot]);
}

#[tokio::test]
async fn time_filters_prune_branches() {
    let e = engine();
    let at_w = "'1970-01-01T00:16:40Z'"; // W = 1,000,000 ms
    let (out, routes) = run(
        &e,
        &analyst(),
        &format!("SELECT count(*) AS n FROM streams WHERE ts < {at_w}"),
    )
    .await;
    assert!(out.contains("| 3 |"), "{out}");
    assert_eq!(routes, vec![RouteBranch::Cold], "no hot read for ts < W");
    let (out, routes) = run(
        &e,
        &analyst(),
        &format!("SELECT count(*) AS n FROM streams WHERE ts >= {at_w}"),
    )
    .await;
    assert!(out.contains("| 3 |"), "{out}");
    assert_eq!(routes, vec![RouteBranch::Hot], "no cold read for ts >= W");
    let (out, routes) = run(
        &e,
        &analyst(),
        &format!("SELECT count(*) AS n FROM streams WHERE ts = {at_w}"),
    )
    .await;
    assert!(out.contains("| 1 |"), "{out}");
    assert_eq!(routes, vec![RouteBranch::Hot]);
}

#[tokio::test]
async fn a_listener_is_scoped_whatever_the_sql() {
    let e = engine();
    let a = Principal::new("a", Role::Listener, Some("a"));
    for sql in [
        "SELECT count(*) AS n FROM streams",
        "SELECT count(*) AS n FROM streams WHERE user_id = 'a' OR user_id = 'b'",
        "SELECT count(*) AS n FROM (SELECT * FROM streams UNION ALL SELECT * FROM streams WHERE user_id = 'b') x WHERE user_id = 'a'",
        "SELECT count(*) AS n FROM streams s WHERE NOT EXISTS (SELECT 1 FROM streams o WHERE o.user_id = 'b' AND o.ts = s.ts)",
        "WITH x AS (SELECT * FROM STREAMS) SELECT count(*) AS n FROM x",
    ] {
        let (out, _) = run(&e, &a, sql).await;
        assert!(out.contains("| 4 |"), "{sql}\n{out}");
    }
    let (out, _) = run(
        &e,
        &a,
        "SELECT count(*) AS n FROM streams WHERE user_id = 'b'",
    )
    .await;
    assert!(out.contains("| 0 |"), "{out}");
    let (out, _) = run(&e, &a, "SELECT DISTINCT user_id FROM streams").await;
    assert!(!out.contains("| b"), "{out}");
}

pub(crate) mod rollups {
    //! The same answers with and without rollups, with `W` in the middle of a day, so the
    //! day of `W` and the partial days at a range's edges are read raw.

    use std::collections::BTreeMap;

    use datafusion::catalog::MemTable;
    use sluice_catalog::{PLAYS_DAILY, TRACK_FIRST_LAST};

    use super::*;

    const DAY: i64 = 86_400_000;
    /// Noon of day 10.
    const W: i64 = 10 * DAY + DAY / 2;

    fn cold_events() -> Vec<(&'static str, &'static str, i64)> {
        let mut rows = Vec::new();
        for day in 0..11 {
            for (i, track) in ["t1", "t2", "t1", "t3"].into_iter().enumerate() {
                let ts = day * DAY + (i as i64) * 5 * 3_600_000 + 1;
                if ts < W {
                    rows.push(("a", track, ts));
                    rows.push(("b", "t2", ts + 7));
                }
            }
        }
        rows
    }

    fn rollup_tables() -> Vec<(String, Arc<dyn datafusion::catalog::TableProvider>)> {
        let mut daily: BTreeMap<(&str, i64, &str), (i64, i64)> = BTreeMap::new();
        let mut first_last: BTreeMap<(&str, &str), (i64, i64, i64)> = BTreeMap::new();
        for (u, t, ts) in cold_events() {
            let d = daily.entry((u, ts - ts % DAY, t)).or_default();
            *d = (d.0 + 1, d.1 + 1000);
            let f = first_last.entry((u, t)).or_insert((ts, ts, 0));
            *f = (f.0.min(ts), f.1.max(ts), f.2 + 1);
        }
        let times = |v: Vec<i64>| {
            Arc::new(TimestampMillisecondArray::from(v).with_timezone(TIME_ZONE))
                as datafusion::arrow::array::ArrayRef
        };
        let daily_batch = RecordBatch::try_new(
            sluice_catalog::table(PLAYS_DAILY).unwrap().schema(),
            vec![
                Arc::new(StringArray::from_iter_values(daily.keys().map(|k| k.0))),
                times(daily.keys().map(|k| k.1).collect()),
                Arc::new(StringArray::from_iter_values(daily.keys().map(|k| k.2))),
                Arc::new(Int64Array::from_iter_values(daily.values().map(|v| v.0))),
                Arc::new(Int64Array::from_iter_values(daily.values().map(|v| v.1))),
            ],
        )
        .unwrap();
        let fl_batch = RecordBatch::try_new(
            sluice_catalog::table(TRACK_FIRST_LAST).unwrap().schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    first_last.keys().map(|k| k.0),
                )),
                Arc::new(StringArray::from_iter_values(
                    first_last.keys().map(|k| k.1),
                )),
                times(first_last.values().map(|v| v.0).collect()),
                times(first_last.values().map(|v| v.1).collect()),
                Arc::new(Int64Array::from_iter_values(
                    first_last.values().map(|v| v.2),
                )),
            ],
        )
        .unwrap();
        [(PLAYS_DAILY, daily_batch), (TRACK_FIRST_LAST, fl_batch)]
            .into_iter()
            .map(|(name, b)| {
                let table = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
                (
                    name.to_string(),
                    Arc::new(table) as Arc<dyn datafusion::catalog::TableProvider>,
                )
            })
            .collect()
    }

    /// Tracks t1..t4 (t4 never played) by artists x (t1, t2) and y (t3, t4).
    fn tracks() -> Arc<dyn datafusion::catalog::TableProvider> {
        let rows = [("t1", "x"), ("t2", "x"), ("t3", "y"), ("t4", "y")];
        let batch = RecordBatch::try_new(
            sluice_catalog::table(sluice_catalog::TRACKS)
                .unwrap()
                .schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| format!("{} name", r.0)),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "al"))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|_| 200_000))),
            ],
        )
        .unwrap();
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap())
    }

    pub(crate) fn engine() -> QueryEngine {
        let cold = MemoryHotStore::new();
        cold.append(&events(&cold_events())).unwrap();
        let hot = MemoryHotStore::new();
        hot.append(&events(&[
            ("a", "t1", W),
            ("a", "t2", W + 3),
            ("b", "t2", W + DAY),
        ]))
        .unwrap();
        QueryEngine::new(Sources {
            hot: Arc::new(hot),
            cold: Arc::new(cold),
            watermark: Arc::new(FixedWatermark(W)),
            entities: vec![(sluice_catalog::TRACKS.to_string(), tracks())],
            remote_entities: vec![],
            rollups: crate::tests::declared(rollup_tables()),
        })
        .unwrap()
    }

    async fn answer(e: &QueryEngine, route: &str, sql: &str) -> (String, Vec<String>) {
        let mut settings = SessionSettings::default();
        settings.set("sluice.route", route).unwrap();
        let PlannedStatement::Query(query) = e.plan(&analyst(), &settings, sql).await.unwrap()
        else {
            panic!("not a query")
        };
        let (stream, manifest) = query.execute().await.unwrap();
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        (
            pretty_format_batches(&batches).unwrap().to_string(),
            manifest.rollups,
        )
    }

    fn t(ms: i64) -> String {
        format!(
            "'{}'",
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        )
    }

    #[tokio::test]
    async fn every_route_gives_the_same_answer() {
        let e = engine();
        let cases = [
            // Whole days, edges, the day of W, across W, after W.
            (
                format!(
                    "SELECT user_id, count(*) AS n, sum(ms_played) AS ms FROM streams \
                     WHERE ts >= {} AND ts < {} GROUP BY user_id ORDER BY user_id",
                    t(DAY + 3_600_000),
                    t(8 * DAY + 7)
                ),
                Some("plays_daily"),
            ),
            (
                format!(
                    "SELECT date_trunc('day', ts) AS d, count(*) AS n FROM streams \
                     WHERE ts >= {} GROUP BY 1 ORDER BY 1",
                    t(7 * DAY + 5)
                ),
                Some("plays_daily"),
            ),
            (
                "SELECT track_uri, min(ts) AS f, max(ts) AS l, count(*) AS n FROM streams \
                 GROUP BY track_uri ORDER BY track_uri"
                    .to_string(),
                Some("track_first_last"),
            ),
            (
                "SELECT count(DISTINCT track_uri) AS k, count(*) AS n FROM streams WHERE user_id = 'a'"
                    .to_string(),
                Some("track_first_last"),
            ),
            (
                format!(
                    "SELECT count(*) AS n FROM streams WHERE ts >= {} AND ts < {}",
                    t(2 * DAY),
                    t(2 * DAY)
                ),
                None,
            ),
            (
                format!(
                    "SELECT count(*) AS n FROM streams WHERE ms_played > 5 AND ts < {}",
                    t(9 * DAY)
                ),
                None,
            ),
            (
                "SELECT date_trunc('hour', ts) AS h, count(*) AS n FROM streams \
                 GROUP BY 1 ORDER BY n DESC, h LIMIT 3"
                    .to_string(),
                None,
            ),
            // One listener's plays joined with the catalog: the partial aggregate by track
            // goes below the join.
            (
                format!(
                    "SELECT t.artist_uri, count(*) AS n, sum(s.ms_played) AS ms, \
                     count(DISTINCT s.user_id) AS u FROM streams s \
                     JOIN tracks t ON s.track_uri = t.track_uri \
                     WHERE s.ts >= {} AND s.user_id = 'a' GROUP BY t.artist_uri ORDER BY 1",
                    t(2 * DAY + 5)
                ),
                Some("plays_daily"),
            ),
            (
                "SELECT date_trunc('month', s.ts) AS m, t.artist_uri, count(*) AS n, \
                 max(t.track_name) AS last_name FROM streams s \
                 JOIN tracks t ON s.track_uri = t.track_uri WHERE s.user_id = 'a' \
                 GROUP BY 1, 2 ORDER BY 1, 2"
                    .to_string(),
                Some("plays_daily"),
            ),
            // Across listeners the join runs where the events are: left as written.
            (
                format!(
                    "SELECT t.artist_uri, count(*) AS n, count(DISTINCT s.user_id) AS u \
                     FROM streams s JOIN tracks t ON s.track_uri = t.track_uri \
                     WHERE s.ts >= {} GROUP BY t.artist_uri ORDER BY 1",
                    t(2 * DAY + 5)
                ),
                None,
            ),
            (
                "SELECT t.artist_uri, min(s.ts) AS f, max(s.ts) AS l, count(*) AS n \
                 FROM streams s JOIN tracks t ON s.track_uri = t.track_uri \
                 WHERE s.user_id = 'a' GROUP BY t.artist_uri ORDER BY 1"
                    .to_string(),
                Some("track_first_last"),
            ),
            (
                // No group at all: a count over no rows is still 0.
                format!(
                    "SELECT count(*) AS n, sum(s.ms_played) AS ms FROM streams s \
                     JOIN tracks t ON s.track_uri = t.track_uri \
                     WHERE t.artist_uri = 'nobody' AND s.user_id = 'b' AND s.ts < {}",
                    t(3 * DAY)
                ),
                Some("plays_daily"),
            ),
            (
                // A sum of a catalog column would be multiplied by the folded rows: raw.
                "SELECT sum(t.duration_ms) AS d FROM streams s \
                 JOIN tracks t ON s.track_uri = t.track_uri WHERE s.user_id = 'a'"
                    .to_string(),
                None,
            ),
            // NOT IN and IN need only the distinct tracks.
            (
                "SELECT track_uri FROM tracks WHERE track_uri NOT IN \
                 (SELECT track_uri FROM streams WHERE user_id = 'a') ORDER BY 1"
                    .to_string(),
                Some("track_first_last"),
            ),
            (
                "SELECT track_uri FROM tracks WHERE track_uri IN \
                 (SELECT track_uri FROM streams WHERE user_id = 'b') ORDER BY 1"
                    .to_string(),
                Some("track_first_last"),
            ),
            // Top k over both branches, with ties on ts broken by the key.
            (
                "SELECT user_id, track_uri, ts FROM streams ORDER BY ts DESC, user_id LIMIT 2"
                    .to_string(),
                None,
            ),
            (
                "SELECT track_uri, ts FROM streams WHERE user_id = 'a' ORDER BY ts LIMIT 3 OFFSET 1"
                    .to_string(),
                None,
            ),
        ];
        for (sql, rollup) in cases {
            let (raw, raw_rollups) = answer(&e, "raw", &sql).await;
            let (auto, auto_rollups) = answer(&e, "auto", &sql).await;
            assert_eq!(auto, raw, "{sql}");
            assert!(raw_rollups.is_empty());
            assert_eq!(
                auto_rollups,
                rollup.map(str::to_string).into_iter().collect::<Vec<_>>(),
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn a_top_k_reaches_each_branch() {
        let e = engine();
        let (plan, _) = answer(
            &e,
            "auto",
            "EXPLAIN SELECT track_uri, ts FROM streams ORDER BY ts LIMIT 2",
        )
        .await;
        let logical = plan
            .lines()
            .filter(|l| l.contains("Sort:") && l.contains("fetch=2"))
            .count();
        // The query's own, then one on each branch of the union.
        assert!(logical >= 3, "{plan}");
    }
}

pub(crate) mod catalog_rollups {
    //! Aggregates over `streams` joined with tracks and artists read from the monthly rollups
    //! by artist and genre, with `W` in the middle of a month: the same answers as raw events.

    use std::collections::BTreeMap;

    use datafusion::arrow::array::ArrayRef;
    use datafusion::catalog::{MemTable, TableProvider};
    use sluice_catalog::{ARTISTS, PLAYS_MONTHLY_ARTIST, PLAYS_MONTHLY_GENRE, TRACKS};

    use super::*;

    const DAY: i64 = 86_400_000;
    /// 1970-01-01, -02-01, -03-01, -04-01.
    const MONTHS: [i64; 4] = [0, 31 * DAY, 59 * DAY, 90 * DAY];
    /// Noon of 1970-03-20.
    const W: i64 = 78 * DAY + DAY / 2;

    /// Tracks by artist: t1, t2 by x (rock), t3 by y (jazz), t4 by z (rock); `t0` is not in
    /// the catalog, so no join (and no rollup) counts it.
    const TRACKS_BY: [(&str, &str); 4] = [("t1", "x"), ("t2", "x"), ("t3", "y"), ("t4", "z")];
    const ARTISTS_ROWS: [(&str, &str, &str); 3] = [
        ("x", "X name", "rock"),
        ("y", "Y name", "jazz"),
        ("z", "Z name", "rock"),
    ];

    fn all_events() -> Vec<(&'static str, &'static str, i64)> {
        let mut rows = Vec::new();
        for day in 0..100 {
            for (i, track) in ["t1", "t3", "t0", "t4", "t2"].into_iter().enumerate() {
                if (day + i as i64) % 3 == 0 {
                    continue;
                }
                let ts = day * DAY + (i as i64) * 4 * 3_600_000 + 1;
                rows.push(("a", track, ts));
                if day % 2 == 0 {
                    rows.push(("b", track, ts + 11));
                }
            }
        }
        rows
    }

    fn table(batch: RecordBatch) -> Arc<dyn TableProvider> {
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap())
    }

    fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(v))
    }

    fn catalog() -> Vec<(String, Arc<dyn TableProvider>)> {
        let tracks = RecordBatch::try_new(
            sluice_catalog::table(TRACKS).unwrap().schema(),
            vec![
                strings(TRACKS_BY.iter().map(|r| r.0)),
                strings(TRACKS_BY.iter().map(|r| r.0)),
                strings(TRACKS_BY.iter().map(|r| r.1)),
                strings(TRACKS_BY.iter().map(|_| "al")),
                Arc::new(Int64Array::from_iter_values(TRACKS_BY.iter().map(|_| 1))),
            ],
        )
        .unwrap();
        let artists = RecordBatch::try_new(
            sluice_catalog::table(ARTISTS).unwrap().schema(),
            vec![
                strings(ARTISTS_ROWS.iter().map(|r| r.0)),
                strings(ARTISTS_ROWS.iter().map(|r| r.1)),
                strings(ARTISTS_ROWS.iter().map(|r| r.2)),
            ],
        )
        .unwrap();
        vec![
            (TRACKS.to_string(), table(tracks)),
            (ARTISTS.to_string(), table(artists)),
        ]
    }

    /// The two rollups, computed here from the events before `W` and the catalog.
    fn rollup_tables() -> Vec<(String, Arc<dyn TableProvider>)> {
        let mut by_artist: BTreeMap<(&str, i64, &str), (i64, i64)> = BTreeMap::new();
        for (u, t, ts) in all_events().into_iter().filter(|e| e.2 < W) {
            let Some((_, a)) = TRACKS_BY.iter().find(|r| r.0 == t) else {
                continue;
            };
            let month = *MONTHS.iter().rev().find(|m| **m <= ts).unwrap();
            let g = by_artist.entry((u, month, a)).or_default();
            *g = (g.0 + 1, g.1 + 1000);
        }
        let artist = |a: &str| ARTISTS_ROWS.iter().find(|r| r.0 == a).unwrap();
        let mut by_genre: BTreeMap<(&str, i64, &str), (i64, i64)> = BTreeMap::new();
        for ((u, m, a), (n, ms)) in &by_artist {
            let g = by_genre.entry((u, *m, artist(a).2)).or_default();
            *g = (g.0 + n, g.1 + ms);
        }
        let times = |v: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(v).with_timezone(TIME_ZONE))
        };
        let ints = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
        let artist_batch = RecordBatch::try_new(
            sluice_catalog::table(PLAYS_MONTHLY_ARTIST)
                .unwrap()
                .schema(),
            vec![
                strings(by_artist.keys().map(|k| k.0)),
                times(by_artist.keys().map(|k| k.1).collect()),
                strings(by_artist.keys().map(|k| k.2)),
                strings(by_artist.keys().map(|k| artist(k.2).1)),
                strings(by_artist.keys().map(|k| artist(k.2).2)),
                ints(by_artist.values().map(|v| v.0).collect()),
                ints(by_artist.values().map(|v| v.1).collect()),
            ],
        )
        .unwrap();
        let genre_batch = RecordBatch::try_new(
            sluice_catalog::table(PLAYS_MONTHLY_GENRE).unwrap().schema(),
            vec![
                strings(by_genre.keys().map(|k| k.0)),
                times(by_genre.keys().map(|k| k.1).collect()),
                strings(by_genre.keys().map(|k| k.2)),
                ints(by_genre.values().map(|v| v.0).collect()),
                ints(by_genre.values().map(|v| v.1).collect()),
            ],
        )
        .unwrap();
        vec![
            (PLAYS_MONTHLY_ARTIST.to_string(), table(artist_batch)),
            (PLAYS_MONTHLY_GENRE.to_string(), table(genre_batch)),
        ]
    }

    pub(crate) fn engine() -> QueryEngine {
        let (cold_rows, hot_rows): (Vec<_>, Vec<_>) =
            all_events().into_iter().partition(|e| e.2 < W);
        let cold = MemoryHotStore::new();
        cold.append(&events(&cold_rows)).unwrap();
        let hot = MemoryHotStore::new();
        hot.append(&events(&hot_rows)).unwrap();
        QueryEngine::new(Sources {
            hot: Arc::new(hot),
            cold: Arc::new(cold),
            watermark: Arc::new(FixedWatermark(W)),
            entities: catalog(),
            remote_entities: vec![],
            rollups: crate::tests::declared(rollup_tables()),
        })
        .unwrap()
    }

    async fn answer(
        e: &QueryEngine,
        who: &Principal,
        route: &str,
        sql: &str,
    ) -> (String, crate::Manifest) {
        let mut settings = SessionSettings::default();
        settings.set("sluice.route", route).unwrap();
        let PlannedStatement::Query(query) = e.plan(who, &settings, sql).await.unwrap() else {
            panic!("not a query")
        };
        let (stream, manifest) = query.execute().await.unwrap();
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        (
            pretty_format_batches(&batches).unwrap().to_string(),
            manifest,
        )
    }

    const JOINS: &str = "FROM streams s JOIN tracks t ON s.track_uri = t.track_uri \
                         JOIN artists a ON t.artist_uri = a.artist_uri";

    #[tokio::test]
    async fn whole_months_come_from_the_rollups_and_the_answers_stay_the_same() {
        let e = engine();
        let listener = Principal::new("a", Role::Listener, Some("a"));
        let cases: Vec<(Principal, String, Option<&str>)> = vec![
            // Whole February from the rollup; 15 January on and March on (across W) raw.
            (
                analyst(),
                format!(
                    "SELECT a.genre, count(*) AS n, sum(s.ms_played) AS ms, \
                     count(DISTINCT s.user_id) AS u {JOINS} \
                     WHERE s.ts >= '1970-01-15T00:00:00Z' AND s.ts < '1970-04-05T00:00:00Z' \
                     GROUP BY a.genre ORDER BY a.genre"
                ),
                Some(PLAYS_MONTHLY_GENRE),
            ),
            (
                listener.clone(),
                format!(
                    "SELECT a.artist_name, count(*) AS plays {JOINS} \
                     GROUP BY a.artist_name ORDER BY plays DESC, a.artist_name LIMIT 2"
                ),
                Some(PLAYS_MONTHLY_ARTIST),
            ),
            (
                analyst(),
                format!(
                    "SELECT date_trunc('month', s.ts) AS m, a.genre, count(*) AS n {JOINS} \
                     WHERE a.genre = 'rock' GROUP BY 1, 2 ORDER BY 1, 2"
                ),
                Some(PLAYS_MONTHLY_GENRE),
            ),
            (
                analyst(),
                format!(
                    "SELECT t.artist_uri, EXTRACT(YEAR FROM s.ts) AS y, count(*) AS n {JOINS} \
                     WHERE s.ts < '1970-03-01T00:00:00Z' GROUP BY 1, 2 ORDER BY 1, 2"
                ),
                Some(PLAYS_MONTHLY_ARTIST),
            ),
            // Finer than a month, a measure it does not keep, a key it does not keep, a
            // range without a whole month, or joins other than the rollup's: raw.
            (
                analyst(),
                format!(
                    "SELECT date_trunc('day', s.ts) AS d, a.genre, count(*) AS n {JOINS} \
                     GROUP BY 1, 2 ORDER BY n DESC, d, a.genre LIMIT 3"
                ),
                None,
            ),
            (
                analyst(),
                format!("SELECT a.genre, min(s.ts) AS f {JOINS} GROUP BY 1 ORDER BY 1"),
                None,
            ),
            (
                analyst(),
                format!("SELECT s.track_uri, count(*) AS n {JOINS} GROUP BY 1 ORDER BY 1"),
                None,
            ),
            (
                analyst(),
                format!(
                    "SELECT a.genre, count(*) AS n {JOINS} \
                     WHERE s.ts >= '1970-02-03T00:00:00Z' AND s.ts < '1970-02-27T00:00:00Z' \
                     GROUP BY 1 ORDER BY 1"
                ),
                None,
            ),
            (
                analyst(),
                "SELECT t.artist_uri, count(*) AS n FROM streams s \
                 JOIN tracks t ON s.track_uri = t.track_uri GROUP BY 1 ORDER BY 1"
                    .to_string(),
                None,
            ),
        ];
        for (who, sql, rollup) in cases {
            let (raw, raw_manifest) = answer(&e, &who, "raw", &sql).await;
            let (auto, auto_manifest) = answer(&e, &who, "auto", &sql).await;
            assert_eq!(auto, raw, "{sql}");
            assert!(raw_manifest.rollups.is_empty());
            let used: Vec<&str> = auto_manifest
                .rollups
                .iter()
                .map(String::as_str)
                .filter(|r| r.starts_with("plays_monthly"))
                .collect();
            assert_eq!(used, rollup.into_iter().collect::<Vec<_>>(), "{sql}");
        }
    }

    #[tokio::test]
    async fn explain_says_why_a_catalog_rollup_was_passed_over() {
        let e = engine();
        let sql = format!("SELECT a.genre, min(s.ts) AS f {JOINS} GROUP BY 1");
        let (_, manifest) = answer(&e, &analyst(), "auto", &sql).await;
        let reasons: Vec<_> = manifest
            .rollups_passed_over
            .iter()
            .map(|p| format!("{}: {}", p.rollup, p.reason))
            .collect();
        assert!(
            reasons.contains(&"plays_monthly_genre: it does not keep min(ts)".to_string()),
            "{reasons:?}"
        );
    }
}

mod plan_reuse {
    //! A routed plan kept for a statement that comes again: reused only for the same
    //! principal, settings and `W`, never for statements whose plan depends on the clock.

    use std::sync::atomic::{AtomicI64, Ordering};

    use async_trait::async_trait;
    use sluice_connector_api::Watermark;

    use super::*;

    /// A watermark a test moves, as a load does.
    #[derive(Debug)]
    struct MovingWatermark(AtomicI64);

    #[async_trait]
    impl Watermark for MovingWatermark {
        async fn current_ms(&self) -> datafusion::error::Result<i64> {
            Ok(self.0.load(Ordering::SeqCst))
        }
    }

    /// The same events as [`super::engine`], all in one store serving both branches, so
    /// any `W` splits them exactly once.
    fn engine(w: Arc<MovingWatermark>) -> QueryEngine {
        let store = Arc::new(MemoryHotStore::new());
        store
            .append(&events(&[
                ("a", "t1", 10),
                ("a", "t2", W - 1),
                ("b", "t1", 20),
                ("a", "t3", W),
                ("a", "t9", W + 5),
                ("b", "t2", W + 7),
            ]))
            .unwrap();
        QueryEngine::new(Sources {
            hot: Arc::clone(&store) as Arc<dyn sluice_connector_api::EventSource>,
            cold: store,
            watermark: w,
            entities: vec![],
            remote_entities: vec![],
            rollups: vec![],
        })
        .unwrap()
    }

    async fn plan(e: &QueryEngine, who: &Principal, sql: &str) -> crate::Query {
        match e.plan(who, &SessionSettings::default(), sql).await.unwrap() {
            PlannedStatement::Query(q) => *q,
            PlannedStatement::Set { .. } => panic!("not a query: {sql}"),
        }
    }

    #[tokio::test]
    async fn a_statement_planned_again_reuses_its_routed_plan() {
        let w = Arc::new(MovingWatermark(AtomicI64::new(W)));
        let e = engine(Arc::clone(&w));
        let a = Principal::new("a", Role::Listener, Some("a"));
        let b = Principal::new("b", Role::Listener, Some("b"));
        let sql = "SELECT count(*) AS n FROM streams";

        let first = plan(&e, &a, sql).await;
        assert!(!first.optimized);
        let (first_out, first_routes) = run(&e, &a, sql).await;
        assert_eq!(e.plans.len(), 1);
        let again = plan(&e, &a, sql).await;
        assert!(again.optimized, "the second time, the kept plan");
        assert_eq!(again.manifest().reads.len(), first_routes.len());
        assert_eq!(run(&e, &a, sql).await, (first_out.clone(), first_routes));
        assert!(first_out.contains("| 4 |"), "{first_out}");

        // Another listener: its own plan, its own rows.
        let (out, _) = run(&e, &b, sql).await;
        assert!(out.contains("| 2 |"), "{out}");
        assert_eq!(e.plans.len(), 2);

        // W moves: planned again, split at the new W.
        w.0.store(W + 6, Ordering::SeqCst);
        assert!(!plan(&e, &a, sql).await.optimized);
        let (out, _) = run(&e, &a, sql).await;
        assert_eq!(out, first_out, "the same events, split elsewhere");
        assert_eq!(e.plans.len(), 3);
    }

    #[tokio::test]
    async fn statements_on_the_clock_are_planned_every_time() {
        let e = engine(Arc::new(MovingWatermark(AtomicI64::new(W))));
        let a = Principal::new("a", Role::Listener, Some("a"));
        for sql in [
            "SELECT count(*) FROM streams WHERE ts < now()",
            "SELECT count(*) FROM streams WHERE ts < current_date",
            "SELECT count(*) FROM streams WHERE ts < (SELECT now())",
        ] {
            run(&e, &a, sql).await;
            assert!(!plan(&e, &a, sql).await.optimized, "{sql}");
        }
        assert_eq!(e.plans.len(), 0);
    }
}
