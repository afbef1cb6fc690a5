use datafusion::error::DataFusionError;

/// Errors of planning or running a query. [`Error::kind`] says whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL could not be planned: syntax, unknown table or column, types, parameters.
    #[error("{0}")]
    Plan(#[source] DataFusionError),
    /// Planning or running failed after the SQL was accepted.
    #[error("{0}")]
    Execute(#[source] DataFusionError),
    /// A statement that would change data or schema.
    #[error("Sluice is read-only: {statement} statements are not supported")]
    ReadOnly { statement: String },
    /// A session setting given a value it cannot take.
    #[error("setting '{name}': {problem}")]
    Setting { name: String, problem: String },
    /// A session setting that does not exist or may not be changed per session.
    #[error("setting '{name}': {problem}")]
    UnknownSetting { name: String, problem: String },
    /// Parameters that do not fit the statement.
    #[error("parameters: {0}")]
    Parameters(String),
    /// Events that cannot be ingested as given.
    #[error("ingest: {0}")]
    Ingest(String),
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
}

/// Whose fault an error is, which decides the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's request is wrong; retrying it unchanged fails again.
    InvalidRequest,
    /// The request is understood but not supported.
    Unsupported,
    /// A limit was hit (memory, resources).
    ResourceExhausted,
    /// A source could not be reached or did not answer in time.
    Unavailable,
    /// A source or the gateway failed.
    Internal,
    /// The query was cancelled.
    Cancelled,
    /// The principal's role does not allow the request.
    PermissionDenied,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Plan(e) | Error::Execute(e) => classify(e),
            Error::ReadOnly { .. } => ErrorKind::Unsupported,
            Error::Setting { .. }
            | Error::UnknownSetting { .. }
            | Error::Parameters(_)
            | Error::Ingest(_) => ErrorKind::InvalidRequest,
            Error::Forbidden(_) => ErrorKind::PermissionDenied,
        }
    }
}

/// Classifies a DataFusion error by its root cause.
fn classify(e: &DataFusionError) -> ErrorKind {
    if let Some(source) = sluice_connector_api::SourceError::find(e) {
        return match source.kind {
            sluice_connector_api::SourceErrorKind::Unavailable => ErrorKind::Unavailable,
            sluice_connector_api::SourceErrorKind::Failed => ErrorKind::Internal,
        };
    }
    match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify(inner)
        }
        DataFusionError::Shared(inner) => classify(inner),
        DataFusionError::Collection(errors) => errors.first().map_or(ErrorKind::Internal, classify),
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_) => ErrorKind::InvalidRequest,
        DataFusionError::NotImplemented(_) => ErrorKind::Unsupported,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourceExhausted,
        // Casts, overflow, division by zero: the data met the query's expressions.
        DataFusionError::ArrowError(e, _) => match e.as_ref() {
            datafusion::arrow::error::ArrowError::CastError(_)
            | datafusion::arrow::error::ArrowError::ParseError(_)
            | datafusion::arrow::error::ArrowError::ArithmeticOverflow(_)
            | datafusion::arrow::error::ArrowError::DivideByZero
            | datafusion::arrow::error::ArrowError::InvalidArgumentError(_)
            | datafusion::arrow::error::ArrowError::ComputeError(_) => ErrorKind::InvalidRequest,
            _ => ErrorKind::Internal,
        },
        DataFusionError::ExecutionJoin(e) if e.is_cancelled() => ErrorKind::Cancelled,
        DataFusionError::Execution(_) => ErrorKind::InvalidRequest,
        _ => ErrorKind::Internal,
    }
}
