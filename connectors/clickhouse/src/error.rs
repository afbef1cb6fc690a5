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
    #[error("ClickHouse at {endpoint}: {message}")]
    Unexpected { endpoint: String, message: String },
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
            Error::UnsupportedType { .. } | Error::Decode { .. } | Error::Unexpected { .. } => {
                false
            }
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
