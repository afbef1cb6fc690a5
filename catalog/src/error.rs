use std::path::PathBuf;

/// Errors of reading or writing a dataset, and of a rollup's declaration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dataset {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset {path}: writing Parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("dataset: building Arrow data: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("dataset {path}: manifest is not valid: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("rollup {table}: {message}")]
    Rollup {
        table: &'static str,
        message: String,
    },
    #[error(
        "cannot write the rollup files into {dir} ({source}): give Sluice a folder it may \
         write with `[embedded] rollups_dir` (SLUICE_EMBEDDED__ROLLUPS_DIR), as when the \
         dataset is mounted read-only; replicas may share it"
    )]
    RollupsNotWritable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a Sluice dataset (no {manifest}); create one with `sluice generate --out {path}`"
    )]
    NotADataset {
        path: PathBuf,
        manifest: &'static str,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
