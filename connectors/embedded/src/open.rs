use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use chrono::Datelike;
use datafusion::arrow::array::{RecordBatch, Scalar, TimestampMillisecondArray};
use datafusion::arrow::compute::{filter_record_batch, kernels::cmp::gt_eq};
use datafusion::catalog::{MemTable, TableProvider};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_catalog::{ALBUMS, ARTISTS, Dataset, RollupDef, TIME_ZONE, TRACKS};
use sluice_connector_api::{FixedWatermark, Sources};
use tracing::info;

use crate::cold::ParquetColdStore;
use crate::error::{Error, Result};
use crate::hot::MemoryHotStore;
use crate::rollups::rollup_tables;

/// How to serve a dataset folder.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Days before the dataset's end that the hot store holds: `W` is midnight UTC of
    /// `end - hot_days`.
    pub hot_days: u32,
    /// The rollups to build and serve (Sluice's own: [`sluice_catalog::rollups`]).
    pub rollups: &'static [RollupDef],
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            hot_days: 7,
            rollups: sluice_catalog::rollups(),
        }
    }
}

/// The embedded sources of one dataset.
#[derive(Debug)]
pub struct EmbeddedSources {
    pub sources: Sources,
    /// The hot store itself, for writers (the same store `sources.hot` reads).
    pub hot: MemoryHotStore,
}

impl EmbeddedSources {
    /// Opens `dataset`: the cold store over its Parquet files, the hot store filled with the
    /// events at or after `W`, the entity tables in memory.
    pub fn open(dataset: &Dataset, config: &EmbeddedConfig) -> Result<Self> {
        let watermark_ms = default_watermark_ms(dataset, config.hot_days);

        let hot = hot_window(dataset, watermark_ms)?;
        let cold = ParquetColdStore::open(dataset)?;
        let entities = entity_tables(dataset)?;
        let rollups = rollup_tables(dataset, watermark_ms, config.rollups)?;
        info!(
            dataset = %dataset.root().display(),
            hot_events = hot.len(),
            watermark_ms,
            "embedded sources open"
        );
        Ok(Self {
            sources: Sources {
                hot: Arc::new(hot.clone()),
                cold: Arc::new(cold),
                watermark: Arc::new(FixedWatermark(watermark_ms)),
                entities,
                remote_entities: vec![],
                rollups,
            },
            hot,
        })
    }
}

/// The watermark the embedded default uses for a dataset: midnight UTC of its end minus
/// `hot_days`.
pub fn default_watermark_ms(dataset: &Dataset, hot_days: u32) -> i64 {
    (dataset.manifest().end - chrono::Duration::days(i64::from(hot_days)))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
}

/// `tracks`, `artists` and `albums` of a dataset as in-memory tables.
pub fn entity_tables(dataset: &Dataset) -> Result<Vec<(String, Arc<dyn TableProvider>)>> {
    let mut entities: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
    for name in [TRACKS, ARTISTS, ALBUMS] {
        let batches = entity_batches(dataset, name)?;
        let schema = sluice_catalog::table(name).expect("declared").schema();
        entities.push((
            name.to_string(),
            Arc::new(MemTable::try_new(schema, vec![batches])?),
        ));
    }
    Ok(entities)
}

/// The rows of one entity table of a dataset (`tracks`, `artists`, `albums`).
pub fn entity_batches(dataset: &Dataset, name: &str) -> Result<Vec<RecordBatch>> {
    read_parquet(&dataset.entity_file(name))
}

/// Every event of a dataset with `ts >= from_ms`, batch by batch, from the files of the
/// years that can hold them (`part-YYYY.parquet`; files named otherwise are all read).
pub fn events_since(
    dataset: &Dataset,
    from_ms: i64,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let from_year = chrono::DateTime::from_timestamp_millis(from_ms)
        .map(|t| t.year())
        .unwrap_or(i32::MIN);
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
    let from = Scalar::new(TimestampMillisecondArray::from(vec![from_ms]).with_timezone(TIME_ZONE));
    for path in files {
        let year = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("part-"))
            .and_then(|y| y.parse::<i32>().ok());
        if year.is_some_and(|y| y < from_year) {
            continue;
        }
        for batch in read_parquet(&path)? {
            let keep = gt_eq(batch.column(2), &from)?;
            let recent = filter_record_batch(&batch, &keep)?;
            if recent.num_rows() > 0 {
                each(recent)?;
            }
        }
    }
    Ok(())
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

/// An in-memory hot store holding the dataset's events at or after `W`.
pub fn hot_window(dataset: &Dataset, watermark_ms: i64) -> Result<MemoryHotStore> {
    let hot = MemoryHotStore::new();
    events_since(dataset, watermark_ms, |batch| {
        hot.append(&batch)?;
        Ok(())
    })?;
    Ok(hot)
}
