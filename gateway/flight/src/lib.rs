//! The Flight SQL service, first in the flow: gRPC calls from ADBC, JDBC and other Flight SQL
//! clients in, authenticated by `sluice-auth`, planned by `sluice-planner`, results streamed
//! back as Arrow. [`SluiceFlightService`] is the entry point; mount
//! [`SluiceFlightService::into_server`] on a tonic server.

mod actions;
mod admission;
mod audit;
mod client_state;
mod error;
mod flight_info;
mod ingest;
mod limits;
mod metadata;
mod metadata_command;
mod results;
mod server;
mod service;
mod session;
mod session_options;
mod statement;

pub use admission::Admission;
pub use audit::AuditLog;
pub use error::Error;
pub use server::SluiceFlightService;
pub use service::SluiceSqlService;
