use sluice_connector_api::{SourceError, SourceErrorKind};

/// What can go wrong talking to ClickHouse. Every variant names the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ClickHouse at {endpoint}: {op}: {source}")]
    Request {
        endpoint: String,
        op: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse at {endpoint}: {op}: no answer within {timeout_ms} ms")]
    Timeout {
        endpoint: String,
        op: &'static str,
        timeout_ms: u64,
    },
    #[error(
        "ClickHouse at {endpoint}: column {column:?} has type {clickhouse_type}, which Sluice cannot map to Arrow"
    )]
    UnsupportedType {
        endpoint: String,
        column: String,
        clickhouse_type: String,
    },
    #[error("ClickHouse at {endpoint}: column {column:?}: {message}")]
    Decode {
        endpoint: String,
        column: String,
        message: String,
    },
    #[error(
        "ClickHouse at {endpoint}: the catalog copy {table} would hold {key} more than once; \
         keys of the catalog must be unique (every event joins its key's one row)"
    )]
    DuplicateKey {
        endpoint: String,
        table: String,
        key: String,
    },
    #[error(
        "ClickHouse at {endpoint} holds no catalog ({table} is empty): load one with \
         `sluice load --config FILE --from DIR`; Sluice serves no catalog of its own beside ClickHouse"
    )]
    NoCatalog { endpoint: String, table: String },
    #[error("ClickHouse at {endpoint}: cluster {cluster:?}: {message}")]
    Cluster {
        endpoint: String,
        cluster: String,
        message: String,
    },
    #[error("ClickHouse at {endpoint}: {message}")]
    Unexpected { endpoint: String, message: String },
    /// A declared rollup no store can build.
    #[error("ClickHouse: {0}")]
    Rollup(#[from] sluice_catalog::Error),
}

impl Error {
    /// True if retrying later may work: the server could not be reached or was too slow.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Request { source, .. } => matches!(
                source,
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
            ),
            Error::Timeout { .. } => true,
            Error::UnsupportedType { .. }
            | Error::Decode { .. }
            | Error::DuplicateKey { .. }
            | Error::NoCatalog { .. }
            | Error::Cluster { .. }
            | Error::Unexpected { .. }
            | Error::Rollup(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        let kind = if e.is_unavailable() {
            SourceErrorKind::Unavailable
        } else {
            SourceErrorKind::Failed
        };
        SourceError::new("clickhouse", kind, e).into()
    }
}
