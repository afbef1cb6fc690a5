//! The gRPC face of Sluice: every Flight call but Handshake is authenticated here, then
//! handed to [`SluiceSqlService`]. It also answers GetSchema, which arrow-flight's generic
//! Flight SQL dispatch leaves unimplemented.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaAsIpc, SchemaResult, Ticket,
};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use sluice_auth::Authenticator;
use sluice_planner::QueryEngine;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::admission::Admission;
use crate::audit::AuditLog;
use crate::error::Error;
use crate::limits::ConcurrencyLimiter;
use crate::service::{Caller, ReplyToken, SluiceSqlService};
use crate::session::Sessions;

type Inner = SluiceSqlService;

/// The Flight service Sluice serves: authentication in front of the Flight SQL commands.
#[derive(Debug, Clone)]
pub struct SluiceFlightService {
    inner: Arc<Inner>,
}

impl SluiceFlightService {
    /// The service over `engine`, with `auth` in front, audit records to `audit`, and
    /// queries let in by `admission` (which the caller keeps, to drain at shutdown).
    pub fn new(
        engine: Arc<QueryEngine>,
        auth: Arc<Authenticator>,
        audit: AuditLog,
        admission: Arc<Admission>,
    ) -> Self {
        let sessions = Arc::new(Sessions::default());
        admission.serve_sessions(&sessions);
        Self {
            inner: Arc::new(SluiceSqlService {
                engine,
                auth,
                sessions,
                audit: Arc::new(audit),
                limiter: ConcurrencyLimiter::default(),
                admission,
                start_at_prepare: true,
                ingests: AtomicU64::new(0),
            }),
        }
    }

    /// Whether CreatePreparedStatement starts a query without parameters at once (on by
    /// default), for the GetFlightInfo that follows to claim. Set before serving.
    pub fn with_start_at_prepare(mut self, on: bool) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("configured before it serves")
            .start_at_prepare = on;
        self
    }

    /// Stops the started queries whose DoGet (or GetFlightInfo, for one started by its
    /// prepare) did not come in time; each new statement does it too. Call it now and then.
    pub fn drop_expired_tickets(&self) {
        self.inner.sessions.drop_expired_tickets();
    }

    /// The tonic service to mount on a server.
    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// Resolves the caller from the `authorization` header, or refuses the call.
    fn authorize<T>(&self, mut request: Request<T>) -> Result<(Request<T>, ReplyToken), Status> {
        self.inner.admission.touch();
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().map(str::to_string))
            .transpose()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let (principal, session) = self
            .inner
            .auth
            .authenticate(header.as_deref())
            .map_err(Error::from)?;
        let reply_token = ReplyToken::default();
        let client = request
            .metadata()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect());
        request.extensions_mut().insert(Caller {
            principal,
            session,
            reply_token: reply_token.clone(),
            client,
        });
        Ok((request, reply_token))
    }
}

/// Gives the client the session token a call reissued (its settings changed): ADBC takes an
/// `authorization` header in the reply of a streamed call (DoAction, DoGet, DoPut; not of a
/// unary GetFlightInfo) as its token from then on, and so carries the settings to
/// whichever replica serves its next call.
fn with_reply_token<T>(
    reply_token: &ReplyToken,
    response: Result<Response<T>, Status>,
) -> Result<Response<T>, Status> {
    let mut response = response?;
    if let Some(token) = reply_token.take() {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("token is not a valid header value"))?;
        response.metadata_mut().insert("authorization", value);
    }
    Ok(response)
}

#[tonic::async_trait]
impl FlightService for SluiceFlightService {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.inner.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.list_flights(request).await)
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.get_flight_info(request).await)
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.poll_flight_info(request).await)
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let (request, _) = self.authorize(request)?;
        let schema = self.inner.schema_for(request).await?;
        let result: SchemaResult = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: datafusion::arrow::error::ArrowError| Error::Encode(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.do_get(request).await)
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.do_put(request).await)
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.do_exchange(request).await)
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.do_action(request).await)
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let (request, reply_token) = self.authorize(request)?;
        with_reply_token(&reply_token, self.inner.list_actions(request).await)
    }
}
