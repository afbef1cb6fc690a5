//! The FlightInfo and schema bytes Sluice answers with.

use arrow_flight::sql::Any;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use bytes::Bytes;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use prost::Message;

use crate::error::{Error, Result};

/// A schema as Flight SQL's IPC bytes (a prepared statement's dataset and parameter schemas).
pub(crate) fn schema_bytes(schema: &Schema) -> Result<Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Error::Encode(e.to_string()))?;
    Ok(bytes)
}

/// A FlightInfo with one endpoint whose ticket is `ticket` (a Flight SQL command).
pub(crate) fn flight_info(
    schema: &Schema,
    ticket: Any,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec()));
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Error::Encode(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1))
}

/// The answer to a statement that returns no rows: no endpoints, so no DoGet.
pub(crate) fn update_info(descriptor: FlightDescriptor) -> Result<FlightInfo> {
    Ok(FlightInfo::new()
        .try_with_schema(&Schema::empty())
        .map_err(|e| Error::Encode(e.to_string()))?
        .with_descriptor(descriptor)
        .with_total_records(0))
}
