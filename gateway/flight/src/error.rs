use tonic::Status;
use tracing::{info, warn};

/// Everything the Flight SQL service can answer with instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Auth(#[from] sluice_auth::AuthError),
    #[error(transparent)]
    Query(#[from] sluice_planner::Error),
    #[error("unknown or closed prepared statement; prepare it again")]
    UnknownPreparedStatement,
    #[error("unknown or expired query ticket; run the query again")]
    UnknownTicket,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit of the principal (concurrency, time, memory, rows) was reached.
    #[error("{0}")]
    Limit(String),
    /// The query ran past the principal's `query_timeout_secs`.
    #[error("{0}")]
    Timeout(String),
    /// The process runs as many queries as it takes (`[server] max_active_queries`).
    #[error("{0}")]
    Busy(String),
    /// The process is draining for shutdown and takes no new statement.
    #[error(
        "Sluice is shutting down and takes no new queries; connect again (to another instance)"
    )]
    ShuttingDown,
    #[error("sending results: {0}")]
    Encode(String),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code this error answers with.
    pub(crate) fn code(&self) -> tonic::Code {
        use sluice_planner::ErrorKind;
        use tonic::Code;
        match self {
            Error::Auth(_) => Code::Unauthenticated,
            Error::Query(q) => match q.kind() {
                ErrorKind::InvalidRequest => Code::InvalidArgument,
                ErrorKind::Unsupported => Code::Unimplemented,
                ErrorKind::ResourceExhausted => Code::ResourceExhausted,
                ErrorKind::Cancelled => Code::Cancelled,
                ErrorKind::Unavailable => Code::Unavailable,
                ErrorKind::Internal => Code::Internal,
                ErrorKind::PermissionDenied => Code::PermissionDenied,
            },
            Error::UnknownPreparedStatement | Error::UnknownTicket => Code::NotFound,
            Error::InvalidRequest(_) => Code::InvalidArgument,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Limit(_) => Code::ResourceExhausted,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Busy(_) | Error::ShuttingDown => Code::Unavailable,
            Error::Encode(_) => Code::Internal,
        }
    }

    /// Whether the gateway or a source failed, rather than the request being refused.
    pub(crate) fn is_failure(&self) -> bool {
        !matches!(self, Error::Busy(_) | Error::ShuttingDown)
            && matches!(
                self.code(),
                tonic::Code::Internal | tonic::Code::Unavailable
            )
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let status = Status::new(e.code(), e.to_string());
        if e.is_failure() {
            warn!(code = ?status.code(), error = %status.message(), "request failed")
        } else {
            info!(code = ?status.code(), error = %status.message(), "request refused")
        }
        status
    }
}
