//! The Flight SQL service, first in the flow: gRPC calls from ADBC, JDBC and other Flight SQL
//! clients in, authenticated by `sluice-auth`, planned by `sluice-planner`, results streamed
//! back as Arrow. [`SluiceFlightService`] is the entry point; mount
//! [`SluiceFlightService::into_server`] on a tonic server.

mod admission;
mod audit;
mod error;
mod limits;
mod metadata;
mod results;
mod server;
mod service;
mod session;
mod session_options;

pub use admission::Admission;
pub use audit::AuditLog;
pub use error::Error;
pub use server::SluiceFlightService;
pub use service::SluiceSqlService;
