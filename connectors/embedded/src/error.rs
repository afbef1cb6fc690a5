use std::path::PathBuf;

/// Errors of opening the embedded sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dataset(#[from] sluice_catalog::Error),
    #[error("embedded source: reading {path}: {source}")]
    ReadParquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("embedded source: opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A declared rollup this store cannot build.
    #[error("embedded source: rollup {table}: {message}")]
    Rollup {
        table: &'static str,
        message: String,
    },
    #[error("embedded source: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("embedded source: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
