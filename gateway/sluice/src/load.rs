//! `sluice load`: the reference loader of the hot/cold contract, for whichever stores are
//! configured.
//!
//! - ClickHouse (`[clickhouse]`): the catalog, then every event before `W` not loaded yet
//!   (those from the `W` it recorded last, or all); only after every insert was acknowledged
//!   is the new `W` recorded (`sluice_watermark`). With Redis, `W` is midnight UTC `hot_days`
//!   before the dataset's end; without it ClickHouse is the only store of events, so `W` is
//!   the end of the dataset's history and every event goes to ClickHouse.
//! - Redis (`[redis]`): every event at or after `W - grace`, then `W` is published in Redis,
//!   then events older than `W - grace` are trimmed.
//!
//! Without `[clickhouse]`, the dataset's own Parquet files are the cold store (already on disk).

use std::time::Instant;

use datafusion::arrow::array::{RecordBatch, Scalar, TimestampMillisecondArray};
use datafusion::arrow::compute::{filter_record_batch, kernels::cmp::lt};
use sluice_catalog::{Dataset, TIME_ZONE};
use sluice_connector_clickhouse::{CATALOG_TABLES, ClickHouseColdStore};
use sluice_connector_embedded::{default_watermark_ms, entity_batches, events_since};
use sluice_connector_redis::RedisHotStore;

use crate::cli::LoadArgs;
use crate::config::FileConfig;

type BoxError = Box<dyn std::error::Error>;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// Midnight UTC of the first day not in the dataset's history: every event is before it.
fn history_end_ms(dataset: &Dataset) -> i64 {
    default_watermark_ms(dataset, 0)
}

pub(crate) fn run(args: LoadArgs) -> Result<(), BoxError> {
    let file = FileConfig::load(args.config.as_deref())?;
    if file.redis.is_none() && file.clickhouse.is_none() {
        return Err(
            "no [clickhouse] or [redis] section in the configuration (nor \
                    SLUICE_CLICKHOUSE__* / SLUICE_REDIS__* variables); the embedded stores \
                    need no loading"
                .into(),
        );
    }
    let dataset = Dataset::open(&args.from)?;
    let hot_days = args.hot_days.or(file.embedded.hot_days).unwrap_or(7);
    let w = if file.redis.is_some() || file.clickhouse.is_none() {
        default_watermark_ms(&dataset, hot_days)
    } else {
        history_end_ms(&dataset)
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if let Some(config) = file.clickhouse {
            let store = ClickHouseColdStore::connect(config).await?;
            load_clickhouse(&store, &dataset, w).await?;
        }
        if let Some(config) = file.redis {
            let store = RedisHotStore::connect(config).await?;
            load_redis(&store, &dataset, w).await?;
        }
        Ok(())
    })
}

async fn load_clickhouse(
    store: &ClickHouseColdStore,
    dataset: &Dataset,
    w: i64,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let endpoint = store.client().endpoint().to_string();
    let from = store.watermark_ms().await?;
    if from.is_some_and(|from| from >= w) {
        println!(
            "ClickHouse at {endpoint} already holds every event before {} (W = {})",
            rfc3339(w),
            rfc3339(from.unwrap_or(w))
        );
        return Ok(());
    }
    // Events at or after the recorded W (or any, before the first load) can only be there
    // if an earlier load stopped part way; loading again would count them twice.
    let (held, latest) = store.event_count().await?;
    if held > 0 && latest.is_some_and(|t| from.is_none_or(|from| t >= from)) {
        return Err(format!(
            "ClickHouse at {endpoint} holds {held} events, some at or after the recorded W ({}): \
             an earlier load stopped part way. Drop the database, run `sluice clickhouse init` \
             and load again.",
            from.map_or("none".to_string(), rfc3339)
        )
        .into());
    }
    // The catalog copy first: the rollups by artist and genre join each inserted block of
    // events with it.
    for name in CATALOG_TABLES {
        store
            .replace_entities(name, &entity_batches(dataset, name)?)
            .await?;
    }
    let start = from.unwrap_or(i64::MIN);
    let before_w = Scalar::new(TimestampMillisecondArray::from(vec![w]).with_timezone(TIME_ZONE));
    let mut pending: Vec<RecordBatch> = Vec::new();
    events_since(dataset, start, |batch| {
        let keep = lt(batch.column(2), &before_w)?;
        let old = filter_record_batch(&batch, &keep)?;
        if old.num_rows() > 0 {
            pending.push(old);
        }
        Ok(())
    })?;
    let total: usize = pending.iter().map(RecordBatch::num_rows).sum();
    let mut loaded = 0usize;
    let mut last_report = Instant::now();
    // About a million rows per insert: one part per insert on the server.
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_rows = 0usize;
    let schema = sluice_catalog::streams_schema();
    for batch in pending {
        chunk_rows += batch.num_rows();
        chunk.push(batch);
        if chunk_rows >= 1 << 20 {
            let merged = datafusion::arrow::compute::concat_batches(&schema, &chunk)?;
            store.insert_events(&merged).await?;
            loaded += chunk_rows;
            chunk.clear();
            chunk_rows = 0;
            if last_report.elapsed().as_secs() >= 2 || loaded == total {
                eprintln!(
                    "ClickHouse: {loaded} of {total} events ({:.0}%, {:.0} events/s)",
                    100.0 * loaded as f64 / total.max(1) as f64,
                    loaded as f64 / started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
        }
    }
    if chunk_rows > 0 {
        let merged = datafusion::arrow::compute::concat_batches(&schema, &chunk)?;
        store.insert_events(&merged).await?;
        loaded += chunk_rows;
    }
    // Every insert above was acknowledged: ClickHouse holds every event before W.
    store.publish_watermark(w).await?;
    println!(
        "loaded {loaded} events and the catalog into ClickHouse at {endpoint}, W = {} ({:.1}s)",
        rfc3339(w),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn load_redis(store: &RedisHotStore, dataset: &Dataset, w: i64) -> Result<(), BoxError> {
    let started = Instant::now();
    let grace_ms =
        i64::try_from(store.config().grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let keep_from = w.saturating_sub(grace_ms);
    let mut batches = Vec::new();
    events_since(dataset, keep_from, |b| {
        batches.push(b);
        Ok(())
    })?;
    let (mut read, mut added) = (0u64, 0u64);
    for batch in &batches {
        read += batch.num_rows() as u64;
        added += store.append(batch).await?;
        eprintln!("loaded {read} events into Redis ({added} new)");
    }
    // The cold store (ClickHouse above, or the dataset's Parquet files) holds every event
    // before W.
    store.set_watermark(w).await?;
    let trimmed = store.trim(keep_from).await?;
    println!(
        "loaded {read} events ({added} new) into {}, trimmed {trimmed}, W = {} ({:.1}s)",
        store.config().endpoint(),
        rfc3339(w),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
