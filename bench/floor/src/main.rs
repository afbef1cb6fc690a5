//! `flight-sql-floor`: the least a Flight SQL server can do for a query, so the benchmark can
//! measure what Sluice adds on top. Every statement, whatever its SQL, answers one row
//! (`1 AS one`) without parsing or planning; prepared statements are accepted and forgotten.
//! The Python ADBC driver sends the same four RPCs to it as to Sluice (CreatePreparedStatement,
//! GetFlightInfo, DoGet, ClosePreparedStatement), so `SELECT 1` through Sluice minus the same
//! through this server is the gateway's own overhead.
//!
//! ```sh
//! flight-sql-floor 127.0.0.1:0    # prints "Flight SQL: grpc://127.0.0.1:PORT"
//! ```

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery, CommandStatementQuery,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt, stream};
use prost::Message;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

static SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::new(vec![Field::new("one", DataType::Int64, false)])));

#[derive(Debug, Clone, Copy)]
struct Floor;

impl Floor {
    /// One endpoint whose ticket DoGet answers with the row.
    fn flight_info(descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        let ticket = TicketStatementQuery {
            statement_handle: Default::default(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&SCHEMA)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_total_records(1);
        Ok(Response::new(info))
    }
}

#[tonic::async_trait]
impl FlightSqlService for Floor {
    type FlightService = Floor;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let reply = HandshakeResponse::default();
        Ok(Response::new(Box::pin(stream::iter([Ok(reply)]))))
    }

    async fn get_flight_info_statement(
        &self,
        _query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Self::flight_info(request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        _query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Self::flight_info(request.into_inner())
    }

    async fn do_get_statement(
        &self,
        _ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = RecordBatch::try_new(
            Arc::clone(&SCHEMA),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        let flight = FlightDataEncoderBuilder::new()
            .build(stream::iter([Ok(batch)]))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }

    async fn do_action_create_prepared_statement(
        &self,
        _query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let IpcMessage(schema) = SchemaAsIpc::new(&SCHEMA, &Default::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: "floor".into(),
            dataset_schema: schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<arrow_flight::sql::DoPutPreparedStatementResult, Status> {
        Ok(Default::default())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("Flight SQL: grpc://{}", listener.local_addr()?);
    Server::builder()
        .add_service(FlightServiceServer::new(Floor))
        // Small request/response messages: without NODELAY, Nagle and delayed ACKs add 40 ms.
        .serve_with_incoming(TcpListenerStream::new(listener).inspect_ok(|conn| {
            let _ = conn.set_nodelay(true);
        }))
        .await?;
    Ok(())
}
