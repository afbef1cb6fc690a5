//! `sluice load`: the reference loader of the hot/cold contract. The cold store of a
//! dataset is its Parquet files, already on disk (acknowledged); the hot store gets every
//! event at or after `W - grace`, then `W` is published, then events older than
//! `W - grace` are trimmed.

use std::time::Instant;

use sluice_catalog::Dataset;
use sluice_connector_embedded::{default_watermark_ms, events_since};
use sluice_connector_redis::RedisHotStore;

use crate::cli::LoadArgs;
use crate::config::FileConfig;

pub(crate) fn run(args: LoadArgs) -> Result<(), Box<dyn std::error::Error>> {
    let file = FileConfig::load(&args.config)?;
    let Some(redis) = file.redis else {
        return Err(format!(
            "{}: no [redis] section; the embedded hot store needs no loading",
            args.config.display()
        )
        .into());
    };
    let dataset = Dataset::open(&args.from)?;
    let hot_days = args.hot_days.or(file.embedded.hot_days).unwrap_or(7);
    let w = default_watermark_ms(&dataset, hot_days);
    let grace_ms = i64::try_from(redis.grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let keep_from = w.saturating_sub(grace_ms);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = Instant::now();
        let store = RedisHotStore::connect(redis).await?;
        let mut batches = Vec::new();
        events_since(&dataset, keep_from, |b| {
            batches.push(b);
            Ok(())
        })?;
        let (mut read, mut added) = (0u64, 0u64);
        for batch in &batches {
            read += batch.num_rows() as u64;
            added += store.append(batch).await?;
            eprintln!("loaded {read} events into Redis ({added} new)");
        }
        // The cold store (the dataset's Parquet files) already holds every event before W.
        store.set_watermark(w).await?;
        let trimmed = store.trim(keep_from).await?;
        println!(
            "loaded {read} events ({added} new) into {}, trimmed {trimmed}, W = {} ({:.1}s)",
            store.config().endpoint(),
            chrono::DateTime::from_timestamp_millis(w)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
