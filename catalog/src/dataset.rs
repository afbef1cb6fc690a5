//! The on-disk layout of a dataset, shared by the generator, the embedded sources and the
//! loader:
//!
//! ```text
//! DIR/sluice-dataset.json       manifest (parameters and counts)
//! DIR/streams/part-YYYY.parquet listening events of year YYYY, sorted by (user_id, ts)
//! DIR/tracks.parquet, DIR/artists.parquet, DIR/albums.parquet
//! ```
//! Columns are exactly those of the logical tables in [`crate::tables`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Datelike, NaiveDate};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::generator::{Catalog, Event, GenerateConfig, user_id};
use crate::model::{self, TIME_ZONE};

/// File name of the manifest inside a dataset folder.
pub const MANIFEST_FILE: &str = "sluice-dataset.json";
const ROWS_PER_GROUP: usize = 64 * 1024;
const BATCH_ROWS: usize = 8 * 1024;

/// What a dataset folder holds: the generator's parameters and the row counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatasetManifest {
    pub format: u32,
    pub seed: u64,
    pub users: u32,
    pub years: u32,
    /// First day of the history.
    pub start: NaiveDate,
    /// First day not in the history (exclusive).
    pub end: NaiveDate,
    pub artists: u64,
    pub albums: u64,
    pub tracks: u64,
    pub events: u64,
}

/// A dataset folder on disk.
#[derive(Debug, Clone)]
pub struct Dataset {
    root: PathBuf,
    manifest: DatasetManifest,
    /// Where derived rollup files go, if not `root/rollups` (a read-only dataset).
    rollups_dir: Option<PathBuf>,
}

impl Dataset {
    /// Opens a folder written by `sluice generate`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let path = root.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotADataset {
                    path: root,
                    manifest: MANIFEST_FILE,
                });
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        let manifest =
            serde_json::from_str(&text).map_err(|source| Error::Manifest { path, source })?;
        Ok(Self {
            root,
            manifest,
            rollups_dir: None,
        })
    }

    /// This dataset with its derived rollup files in `dir` rather than in the dataset
    /// folder (which may then be read-only; replicas may share `dir`).
    pub fn with_rollups_dir(mut self, dir: PathBuf) -> Self {
        self.rollups_dir = Some(dir);
        self
    }

    /// The folder of the derived rollup files.
    pub fn rollups_dir(&self) -> PathBuf {
        self.rollups_dir
            .clone()
            .unwrap_or_else(|| self.root.join("rollups"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> &DatasetManifest {
        &self.manifest
    }

    /// Folder of the `streams` Parquet files.
    pub fn streams_dir(&self) -> PathBuf {
        self.root.join("streams")
    }

    /// Parquet file of an entity table (`tracks`, `artists`, `albums`).
    pub fn entity_file(&self, table: &str) -> PathBuf {
        self.root.join(format!("{table}.parquet"))
    }

    /// Where the rollup `table` of the events before `w_ms` is kept (built from the events
    /// on first use: `rollups/w<W>/<table>.parquet`, under [`Self::rollups_dir`]).
    pub fn rollup_file(&self, table: &str, w_ms: i64) -> PathBuf {
        self.rollups_dir()
            .join(format!("w{w_ms}"))
            .join(format!("{table}.parquet"))
    }

    /// Writes a rollup's rows to [`Self::rollup_file`], whole or not at all (through a
    /// temporary file of this writer's own, then a rename), so a reader never sees half of
    /// one. Replicas sharing the folder may build the same file at once: each renames its
    /// own whole copy into place, and the copies are the same.
    pub fn write_rollup(
        &self,
        table: &str,
        w_ms: i64,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<PathBuf> {
        let path = self.rollup_file(table, w_ms);
        let dir = path.parent().expect("a rollup file has a folder");
        let not_writable = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                Error::RollupsNotWritable {
                    dir: self.rollups_dir(),
                    source,
                }
            }
            _ => Error::Io {
                path: dir.to_path_buf(),
                source,
            },
        };
        std::fs::create_dir_all(dir).map_err(not_writable)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let partial =
            path.with_extension(format!("parquet.{}-{nanos}.partial", std::process::id()));
        match write_parquet(&partial, schema, batches) {
            Err(Error::Io { source, .. }) => return Err(not_writable(source)),
            other => other?,
        }
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        Ok(path)
    }

    pub fn user_ids(&self) -> Vec<String> {
        (0..self.manifest.users)
            .map(|u| user_id(u, self.manifest.users))
            .collect()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let parquet = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io(path))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties())).map_err(parquet)?;
    for b in batches {
        writer.write(b).map_err(parquet)?;
    }
    writer.close().map_err(parquet)?;
    Ok(())
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringBuilder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn ints(values: impl Iterator<Item = i64>) -> ArrayRef {
    let mut b = Int64Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
        - NaiveDate::from_ymd_opt(1970, 1, 1)
            .expect("valid")
            .num_days_from_ce()
}

/// Writes a dataset: catalog first, then listeners one by one, then the manifest.
pub(crate) struct DatasetWriter {
    root: PathBuf,
    config: GenerateConfig,
    /// Events per year, in (user, ts) order because listeners are added in order.
    years: std::collections::BTreeMap<i32, Vec<Event>>,
    events: u64,
}

impl DatasetWriter {
    pub(crate) fn create(root: &Path, config: &GenerateConfig) -> Result<Self> {
        let streams = root.join("streams");
        std::fs::create_dir_all(&streams).map_err(io(&streams))?;
        // A previous dataset's files would be read as part of this one.
        for entry in std::fs::read_dir(&streams).map_err(io(&streams))? {
            let path = entry.map_err(io(&streams))?.path();
            if path.extension().is_some_and(|e| e == "parquet") {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let manifest = root.join(MANIFEST_FILE);
        if manifest.exists() {
            std::fs::remove_file(&manifest).map_err(io(&manifest))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            config: config.clone(),
            years: Default::default(),
            events: 0,
        })
    }

    pub(crate) fn write_catalog(&mut self, catalog: &Catalog) -> Result<()> {
        let artists = RecordBatch::try_new(
            model::table(model::ARTISTS).expect("declared").schema(),
            vec![
                strings(catalog.artists.iter().map(|a| a.uri.as_str())),
                strings(catalog.artists.iter().map(|a| a.name.as_str())),
                strings(
                    catalog
                        .artists
                        .iter()
                        .map(|a| crate::generator::genre_name(a.genre)),
                ),
            ],
        )?;
        let mut release = Date32Builder::new();
        for a in &catalog.albums {
            release.append_value(days_since_epoch(a.release));
        }
        let albums = RecordBatch::try_new(
            model::table(model::ALBUMS).expect("declared").schema(),
            vec![
                strings(catalog.albums.iter().map(|a| a.uri.as_str())),
                strings(catalog.albums.iter().map(|a| a.name.as_str())),
                strings(
                    catalog
                        .albums
                        .iter()
                        .map(|a| catalog.artists[a.artist as usize].uri.as_str()),
                ),
                Arc::new(release.finish()),
            ],
        )?;
        let tracks = RecordBatch::try_new(
            model::table(model::TRACKS).expect("declared").schema(),
            vec![
                strings(catalog.tracks.iter().map(|t| t.uri.as_str())),
                strings(catalog.tracks.iter().map(|t| t.name.as_str())),
                strings(
                    catalog
                        .tracks
                        .iter()
                        .map(|t| catalog.artists[t.artist as usize].uri.as_str()),
                ),
                strings(
                    catalog
                        .tracks
                        .iter()
                        .map(|t| catalog.albums[t.album as usize].uri.as_str()),
                ),
                ints(catalog.tracks.iter().map(|t| t.duration_ms)),
            ],
        )?;
        for (name, batch) in [
            (model::ARTISTS, artists),
            (model::ALBUMS, albums),
            (model::TRACKS, tracks),
        ] {
            let path = self.root.join(format!("{name}.parquet"));
            write_parquet(&path, batch.schema(), &[batch])?;
        }
        Ok(())
    }

    pub(crate) fn add_listener_events(&mut self, _user: u32, events: &[Event]) -> Result<()> {
        for e in events {
            let year = DateTime::from_timestamp_millis(e.ts_ms)
                .expect("generated timestamps are in range")
                .year();
            self.years.entry(year).or_default().push(*e);
        }
        self.events += events.len() as u64;
        Ok(())
    }

    pub(crate) fn finish(self, catalog: &Catalog) -> Result<DatasetManifest> {
        let schema = model::streams_schema();
        let users: Vec<String> = (0..self.config.users)
            .map(|u| user_id(u, self.config.users))
            .collect();
        for (year, events) in &self.years {
            let mut batches = Vec::with_capacity(events.len() / BATCH_ROWS + 1);
            for chunk in events.chunks(BATCH_ROWS) {
                let mut ts = TimestampMillisecondBuilder::new().with_timezone(TIME_ZONE);
                chunk.iter().for_each(|e| ts.append_value(e.ts_ms));
                batches.push(RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        strings(chunk.iter().map(|e| users[e.user as usize].as_str())),
                        strings(
                            chunk
                                .iter()
                                .map(|e| catalog.tracks[e.track as usize].uri.as_str()),
                        ),
                        Arc::new(ts.finish()),
                        ints(chunk.iter().map(|e| e.ms_played)),
                    ],
                )?);
            }
            let path = self
                .root
                .join("streams")
                .join(format!("part-{year}.parquet"));
            write_parquet(&path, Arc::clone(&schema), &batches)?;
        }
        let manifest = DatasetManifest {
            format: 1,
            seed: self.config.seed,
            users: self.config.users,
            years: self.config.years,
            start: self.config.start(),
            end: self.config.end,
            artists: catalog.artists.len() as u64,
            albums: catalog.albums.len() as u64,
            tracks: catalog.tracks.len() as u64,
            events: self.events,
        };
        let path = self.root.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        std::fs::write(&path, text).map_err(io(&path))?;
        Ok(manifest)
    }
}
