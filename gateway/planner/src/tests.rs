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

use crate::{PlannedStatement, QueryEngine, RouteBranch, SessionSettings};

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
fn engine() -> QueryEngine {
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
    let (stream, routes) = query.execute().await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    (
        pretty_format_batches(&batches).unwrap().to_string(),
        routes.iter().map(|r| r.branch).collect(),
    )
}

fn analyst() -> Principal {
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
