//! The Model Context Protocol front, beside Flight SQL: tools for an agent acting for one
//! listener (`list_tables`, `describe_table`, `query`, `explain`) and the guide a model reads
//! first (seed questions, schema notes), over Streamable HTTP ([`serve_http`], in the
//! gateway) or stdio ([`serve_stdio`], `sluice mcp --url`).
//!
//! Every tool call is a Flight SQL call made with the caller's own credential: in the gateway
//! to its Flight SQL service in-process, on stdio to a running gateway over the network. So
//! the listener scope, the per-principal limits, admission, the audit record and the metrics
//! apply to it exactly as to any Flight SQL statement, and MCP adds no second path to the data.
//!
//! - `http.rs`: the HTTP server: `Authorization: Bearer` checked (401 otherwise), `/mcp`, TLS.
//! - `stdio.rs`: the stdio server and the gateway it connects to.
//! - `tools.rs`: the tools and resources, as rmcp's `ServerHandler`.
//! - `gateway.rs`: the Flight SQL calls behind the tools.
//! - `capped.rs`: a result read up to the row and byte caps, then dropped.
//! - `guide.rs`: the seed questions and schema notes a model reads.
//! - `error.rs`: errors, worded for a model to act on.

mod capped;
mod error;
mod gateway;
mod guide;
mod http;
mod stdio;
mod tools;

pub use capped::Caps;
pub use error::Error;
pub use gateway::{FlightTransport, Gateway};
pub use http::{HttpOptions, serve_http};
pub use stdio::{StdioOptions, serve_stdio};
pub use tools::SluiceTools;
