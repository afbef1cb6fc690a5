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
    #[error("sending results: {0}")]
    Encode(String),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        use sluice_planner::ErrorKind;
        let message = e.to_string();
        let status = match &e {
            Error::Auth(_) => Status::unauthenticated(message),
            Error::Query(q) => match q.kind() {
                ErrorKind::InvalidRequest => Status::invalid_argument(message),
                ErrorKind::Unsupported => Status::unimplemented(message),
                ErrorKind::ResourceExhausted => Status::resource_exhausted(message),
                ErrorKind::Cancelled => Status::cancelled(message),
                ErrorKind::Unavailable => Status::unavailable(message),
                ErrorKind::Internal => Status::internal(message),
                ErrorKind::PermissionDenied => Status::permission_denied(message),
            },
            Error::UnknownPreparedStatement | Error::UnknownTicket => Status::not_found(message),
            Error::InvalidRequest(_) => Status::invalid_argument(message),
            Error::Unsupported(_) => Status::unimplemented(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::Encode(_) => Status::internal(message),
        };
        match status.code() {
            tonic::Code::Internal | tonic::Code::Unavailable => {
                warn!(code = ?status.code(), error = %status.message(), "request failed")
            }
            _ => info!(code = ?status.code(), error = %status.message(), "request refused"),
        }
        status
    }
}
