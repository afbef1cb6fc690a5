use std::fmt;

use datafusion::error::DataFusionError;

/// Whether a source failure may pass by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The source could not be reached or did not answer in time: retrying later may work.
    Unavailable,
    /// The source answered, but with something Sluice cannot use.
    Failed,
}

/// A connector's failure as it crosses DataFusion (as `DataFusionError::External`), keeping
/// which source failed and how, so the service can answer with the right gRPC code.
#[derive(Debug)]
pub struct SourceError {
    pub source_name: &'static str,
    pub kind: SourceErrorKind,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl SourceError {
    pub fn new(
        source_name: &'static str,
        kind: SourceErrorKind,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            source_name,
            kind,
            error: Box::new(error),
        }
    }

    /// The source error inside a DataFusion error, if there is one.
    pub fn find(e: &DataFusionError) -> Option<&SourceError> {
        match e {
            DataFusionError::External(inner) => inner.downcast_ref::<SourceError>(),
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                Self::find(inner)
            }
            DataFusionError::Shared(inner) => Self::find(inner),
            _ => None,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error.as_ref())
    }
}

impl From<SourceError> for DataFusionError {
    fn from(e: SourceError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}
