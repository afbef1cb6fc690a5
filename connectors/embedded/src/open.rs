use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{RecordBatch, Scalar, TimestampMillisecondArray};
use datafusion::arrow::compute::{filter_record_batch, kernels::cmp::gt_eq};
use datafusion::catalog::{MemTable, TableProvider};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_catalog::{ALBUMS, ARTISTS, Dataset, TIME_ZONE, TRACKS};
use sluice_connector_api::{FixedWatermark, Sources};
use tracing::info;

use crate::cold::ParquetColdStore;
use crate::error::{Error, Result};
use crate::hot::MemoryHotStore;

/// How to serve a dataset folder.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Days before the dataset's end that the hot store holds: `W` is midnight UTC of
    /// `end - hot_days`.
    pub hot_days: u32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self { hot_days: 7 }
    }
}

/// The embedded sources of one dataset.
#[derive(Debug)]
pub struct EmbeddedSources {
    pub sources: Sources,
    pub hot: MemoryHotStore,
    pub watermark_ms: i64,
}

impl EmbeddedSources {
    /// Opens `dataset`: the cold store over its Parquet files, the hot store filled with the
    /// events at or after `W`, the entity tables in memory.
    pub fn open(dataset: &Dataset, config: &EmbeddedConfig) -> Result<Self> {
        let end = dataset.manifest().end;
        let w_day = end - chrono::Duration::days(i64::from(config.hot_days));
        let watermark_ms = w_day
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis();

        let hot = MemoryHotStore::new();
        load_hot_window(dataset, &hot, w_day, watermark_ms)?;
        let cold = ParquetColdStore::open(dataset)?;

        let mut entities: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
        for name in [TRACKS, ARTISTS, ALBUMS] {
            let path = dataset.entity_file(name);
            let batches = read_parquet(&path)?;
            let schema = sluice_catalog::table(name).expect("declared").schema();
            entities.push((
                name.to_string(),
                Arc::new(MemTable::try_new(schema, vec![batches])?),
            ));
        }
        info!(
            dataset = %dataset.root().display(),
            hot_events = hot.len(),
            watermark = %w_day,
            "embedded sources open"
        );
        Ok(Self {
            sources: Sources {
                hot: Arc::new(hot.clone()),
                cold: Arc::new(cold),
                watermark: Arc::new(FixedWatermark(watermark_ms)),
                entities,
            },
            hot,
            watermark_ms,
        })
    }
}

fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let read = |source| Error::ReadParquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(read)?
        .with_batch_size(8192)
        .build()
        .map_err(read)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Fills the hot store with the events at or after `W`, from the files of the years that
/// can hold them (`part-YYYY.parquet`; files named otherwise are all read).
fn load_hot_window(
    dataset: &Dataset,
    hot: &MemoryHotStore,
    w_day: NaiveDate,
    watermark_ms: i64,
) -> Result<()> {
    let dir = dataset.streams_dir();
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::Open {
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let w =
        Scalar::new(TimestampMillisecondArray::from(vec![watermark_ms]).with_timezone(TIME_ZONE));
    for path in files {
        let year = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("part-"))
            .and_then(|y| y.parse::<i32>().ok());
        if year.is_some_and(|y| y < w_day.year()) {
            continue;
        }
        for batch in read_parquet(&path)? {
            let keep = gt_eq(batch.column(2), &w)?;
            let recent = filter_record_batch(&batch, &keep)?;
            if recent.num_rows() > 0 {
                hot.append(&recent)?;
            }
        }
    }
    Ok(())
}
