//! A rollup declared in one place, answered on both stores: `plays_monthly_album` below is a
//! [`RollupDef`] and nothing else. The embedded default builds its Parquet file from it; a
//! real ClickHouse (Debian's 18.16, started here on loopback ports), set up and loaded with
//! the documented `sluice clickhouse init` and `sluice load`, gets its state table,
//! materialized view and view from it, filled from the events already held. On both, the
//! planner reads it for a year of plays by album, with the answer the raw events give.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use sluice_auth::{Principal, Role};
use sluice_catalog::{
    ALBUMS, CatalogKey, Dataset, RollupDef, RollupGrain, TRACKS, rollups, user_id,
};
use sluice_connector_api::{Sources, Watermark};
use sluice_connector_clickhouse::{ClickHouseColdStore, ClickHouseConfig, ClickHouseWatermark};
use sluice_connector_embedded::{EmbeddedConfig, EmbeddedSources, MemoryHotStore};
use sluice_planner::{Manifest, PlannedStatement, QueryEngine, SessionSettings};
use sluice_tests::{PrivateClickHouse, generate, sluice_bin};

/// Sluice's rollups and one more, declared here alone.
static DECLARED: LazyLock<Vec<RollupDef>> = LazyLock::new(|| {
    let mut all = rollups().to_vec();
    all.push(RollupDef {
        table: "plays_monthly_album",
        description: "Rollup of streams joined with tracks and albums: plays per listener, \
                      UTC month and album.",
        grain: RollupGrain::Month { column: "month" },
        keys: &[],
        joins: &[TRACKS, ALBUMS],
        catalog_keys: &[
            CatalogKey {
                table: ALBUMS,
                column: "album_uri",
                description: "The album of the tracks played.",
            },
            CatalogKey {
                table: ALBUMS,
                column: "album_name",
                description: "The album's title.",
            },
        ],
        plays: "plays",
        ms_played: Some("ms_played"),
        first_ts: None,
        last_ts: None,
    });
    all
});

/// A year of one listener's plays by album, which only the declared rollup answers whole.
fn question(year: i32) -> String {
    format!(
        "SELECT al.album_name, count(*) AS plays, sum(s.ms_played) AS ms \
         FROM streams s JOIN tracks t ON s.track_uri = t.track_uri \
         JOIN albums al ON t.album_uri = al.album_uri \
         WHERE s.ts >= '{year}-01-01T00:00:00Z' AND s.ts < '{}-01-01T00:00:00Z' \
         GROUP BY al.album_name ORDER BY plays DESC, al.album_name",
        year + 1
    )
}

async fn answer(
    engine: &QueryEngine,
    who: &Principal,
    route: &str,
    sql: &str,
) -> (String, Manifest) {
    let mut settings = SessionSettings::default();
    settings.set("sluice.route", route).unwrap();
    let PlannedStatement::Query(query) = engine.plan(who, &settings, sql).await.unwrap() else {
        panic!("not a query: {sql}")
    };
    let (stream, manifest) = query.execute().await.unwrap();
    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
    (
        pretty_format_batches(&batches).unwrap().to_string(),
        manifest,
    )
}

fn sluice(args: &[&str], config: &Path) {
    let out = Command::new(sluice_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_declared_once_is_answered_on_the_embedded_default_and_on_clickhouse() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    generate(&data, 40);
    let dataset = Dataset::open(&data).unwrap();
    let year = chrono_year(dataset.manifest().end) - 1;
    let listener = user_id(1, dataset.manifest().users);
    let who = Principal::new("listener", Role::Listener, Some(&listener));
    let sql = question(year);

    // The embedded default, built from the declarations.
    let config = EmbeddedConfig {
        rollups: &DECLARED,
        ..EmbeddedConfig::default()
    };
    let embedded =
        QueryEngine::new(EmbeddedSources::open(&dataset, &config).unwrap().sources).unwrap();
    let (raw, raw_manifest) = answer(&embedded, &who, "raw", &sql).await;
    let (auto, manifest) = answer(&embedded, &who, "auto", &sql).await;
    assert!(raw_manifest.rollups.is_empty(), "{raw_manifest:?}");
    assert_eq!(manifest.rollups, ["plays_monthly_album"], "{manifest:?}");
    assert_eq!(auto, raw);
    assert!(raw.lines().count() > 5, "a year of albums: {raw}");

    // ClickHouse, as a deployment sets it up; then the declared rollup added to the loaded
    // database, which fills it from the events held.
    let server = PrivateClickHouse::start();
    let config_file = tmp.path().join("sluice.toml");
    let toml = format!(
        "[clickhouse]\nurl = \"{}\"\ndatabase = \"declared\"\n",
        server.url
    );
    std::fs::write(&config_file, &toml).unwrap();
    sluice(&["clickhouse", "init"], &config_file);
    sluice(&["load", "--from", data.to_str().unwrap()], &config_file);
    let mut config = ClickHouseConfig::new(&server.url);
    config.database = "declared".into();
    let cold = ClickHouseColdStore::connect(config).await.unwrap();
    cold.init(&DECLARED).await.unwrap();
    let watermark = ClickHouseWatermark::new(cold.clone());
    watermark.current_ms().await.unwrap();
    let clickhouse = QueryEngine::new(Sources {
        hot: Arc::new(MemoryHotStore::new()),
        cold: Arc::new(cold.clone()),
        watermark: Arc::new(watermark),
        entities: cold.catalog_tables().await.unwrap(),
        remote_entities: cold.entity_tables(),
        rollups: cold.rollup_tables(&DECLARED),
    })
    .unwrap();
    let (on_clickhouse, manifest) = answer(&clickhouse, &who, "auto", &sql).await;
    assert_eq!(manifest.rollups, ["plays_monthly_album"], "{manifest:?}");
    assert_eq!(manifest.sources, ["clickhouse"], "{manifest:?}");
    assert_eq!(on_clickhouse, raw);
    let (raw_on_clickhouse, manifest) = answer(&clickhouse, &who, "raw", &sql).await;
    assert!(manifest.rollups.is_empty(), "{manifest:?}");
    assert_eq!(raw_on_clickhouse, raw);
    eprintln!("{year}, {listener}, every route on both stores:\n{raw}");
}

fn chrono_year(day: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    day.year()
}
