/// Errors of the Redis hot store. Each names Redis and what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Redis at {url}: {op}: {source}")]
    Redis {
        url: String,
        op: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis at {url}: {op}: no answer within {timeout_ms} ms")]
    Timeout {
        url: String,
        op: &'static str,
        timeout_ms: u64,
    },
    #[error("Redis key {key}: member {member:?} is not '<ts>|<track_uri>|<ms_played>'")]
    Corrupt { key: String, member: String },
    #[error("Redis hot store: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("Redis hot store: events batch: {0}")]
    Batch(String),
    #[error("no watermark in Redis at {key}: load data with `sluice load` first")]
    NoWatermark { key: String },
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        let source = match &e {
            Error::Redis { .. } | Error::Timeout { .. } => {
                sluice_connector_api::SourceErrorKind::Unavailable
            }
            Error::Corrupt { .. }
            | Error::Arrow(_)
            | Error::Batch(_)
            | Error::NoWatermark { .. }
            | Error::Config(_) => sluice_connector_api::SourceErrorKind::Failed,
        };
        sluice_connector_api::SourceError::new("redis", source, e).into()
    }
}
