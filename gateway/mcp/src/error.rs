//! What can go wrong behind a tool, worded for the model that called it: what happened and
//! what to do instead. The gateway's own message (which never carries another listener's
//! data) is kept whole; a hint is added by the gRPC code, never by the text.

use std::error::Error as _;

use arrow_flight::error::FlightError;
use tonic::Code;

/// An MCP tool's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway refused or failed the call; `status` is its answer.
    #[error("{}", worded(.status))]
    Gateway { status: Box<tonic::Status> },
    /// The gateway's answer could not be read (a protocol mismatch, not the caller's fault).
    #[error("reading the gateway's answer: {0}")]
    Answer(String),
    /// The caller named a table the gateway does not list.
    #[error(
        "no table named '{table}'; the tables are: {known}. Call list_tables for their descriptions"
    )]
    UnknownTable { table: String, known: String },
    /// The caller's arguments were wrong.
    #[error("{0}")]
    Arguments(String),
    /// The gateway's address is unusable (stdio mode).
    #[error("connecting to the gateway at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The call never reached the gateway (stdio mode: it is down or elsewhere).
    #[error(
        "the gateway could not be reached ({reason}): check that `sluice serve` runs at the \
         address `sluice mcp --url` was given, then try again"
    )]
    Unreachable { reason: String },
    /// Serving MCP failed (binding, TLS files, the transport).
    #[error("{0}")]
    Serve(String),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<FlightError> for Error {
    fn from(e: FlightError) -> Self {
        match e {
            // A status made here, not sent by the gateway, carries the transport's error as
            // its source: the call never got there.
            FlightError::Tonic(status) if status.source().is_some() => Self::Unreachable {
                reason: status.message().to_string(),
            },
            FlightError::Tonic(status) => Self::Gateway { status },
            other => Self::Answer(other.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::Answer(e.to_string())
    }
}

/// The gateway's message with what a model can do about it.
fn worded(status: &tonic::Status) -> String {
    let message = status.message();
    let hint = match status.code() {
        Code::InvalidArgument => {
            "Fix the SQL and call again: the message says what was wrong (an unknown \
             column lists the columns there are; a parse error gives the position). \
             describe_table shows a table's columns."
        }
        Code::ResourceExhausted => {
            "A limit stopped it; the message names which. Ask for less: a narrower time \
             range, an aggregate instead of raw rows, or a LIMIT."
        }
        Code::DeadlineExceeded => {
            "It ran past the time limit. Ask for less: a narrower time range, or an \
             aggregate the rollups answer (counts by day, month, artist or genre)."
        }
        Code::PermissionDenied => {
            "This principal may not do that; a listener sees only its own listening and \
             may only read."
        }
        Code::Unauthenticated => "The credential was refused; it may have expired.",
        Code::Unavailable => "A source is down or busy; try again shortly.",
        Code::NotFound => "Call list_tables for what there is.",
        _ => "",
    };
    if hint.is_empty() {
        message.to_string()
    } else {
        format!("{message}\n{hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_the_gateways_words_and_says_what_to_do() {
        let e = Error::from(FlightError::Tonic(Box::new(
            tonic::Status::resource_exhausted(
                "the result passed this principal's max_result_rows (1000)",
            ),
        )));
        let text = e.to_string();
        assert!(text.starts_with("the result passed this principal's max_result_rows (1000)"));
        assert!(text.contains("Ask for less"), "{text}");
    }

    #[test]
    fn a_call_that_never_left_says_the_gateway_is_unreachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let mut status = tonic::Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(io));
        let text = Error::from(FlightError::Tonic(Box::new(status))).to_string();
        assert!(
            text.contains("could not be reached (tcp connect error)"),
            "{text}"
        );
        assert!(text.contains("sluice mcp --url"), "{text}");
    }

    #[test]
    fn an_unknown_code_is_the_message_alone() {
        let e = Error::from(FlightError::Tonic(Box::new(tonic::Status::internal(
            "boom",
        ))));
        assert_eq!(e.to_string(), "boom");
    }
}
