//! The Flight SQL service: arrow-flight's `FlightSqlService`, overriding only the commands
//! Sluice answers, each handler a few lines calling where the work is done: `statement.rs`
//! (a statement's life), `metadata_command.rs` (the metadata commands), `actions.rs`
//! (session options, cancel), `ingest.rs`. Every call reaching it has been authenticated by
//! [`crate::SluiceFlightService`], which leaves the [`Caller`] in the request's extensions.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionCancelQueryRequest,
    ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, Command,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use datafusion::arrow::datatypes::Schema;
use futures::Stream;
use prost::Message;
use sluice_auth::{Authenticator, Principal};
use sluice_planner::{PlannedStatement, QueryEngine};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use crate::actions::custom_actions;
use crate::admission::Admission;
use crate::audit::AuditLog;
use crate::error::{Error, Result};
use crate::limits::ConcurrencyLimiter;
use crate::metadata_command::MetadataCommand;
use crate::session::Sessions;

/// Who is calling: set by the authentication layer on every request but Handshake.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) principal: Arc<Principal>,
    /// The caller's session, as its token (or credentials) say.
    pub(crate) session: sluice_auth::Session,
    /// A session token to send back with the reply (settings changed).
    pub(crate) reply_token: ReplyToken,
    /// The caller's `user-agent` (the client library, or `sluice-mcp` for an MCP tool
    /// call), for the audit record.
    pub(crate) client: Option<String>,
}

impl Caller {
    /// What this replica keeps for the caller's session is under this.
    pub(crate) fn session_key(&self) -> &str {
        self.session.id()
    }
}

/// The session token a call reissued, for the reply's `authorization` header.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplyToken(Arc<std::sync::Mutex<Option<String>>>);

impl ReplyToken {
    pub(crate) fn set(&self, token: String) {
        *self.0.lock().expect("reply token lock") = Some(token);
    }

    pub(crate) fn take(&self) -> Option<String> {
        self.0.lock().expect("reply token lock").take()
    }
}

pub(crate) type DoGetStream = <SluiceSqlService as FlightService>::DoGetStream;

/// Sluice's implementation of the Flight SQL commands.
#[derive(Debug)]
pub struct SluiceSqlService {
    pub(crate) engine: Arc<QueryEngine>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) limiter: ConcurrencyLimiter,
    pub(crate) admission: Arc<Admission>,
    /// Whether CreatePreparedStatement starts a query without parameters at once.
    pub(crate) start_at_prepare: bool,
    /// Ingests through this gateway so far; a query started at prepare before the latest
    /// one runs again.
    pub(crate) ingests: AtomicU64,
}

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials"))
}

impl SluiceSqlService {
    /// The schema a descriptor's command would return (GetSchema).
    pub(crate) async fn schema_for(&self, request: Request<FlightDescriptor>) -> Result<Schema> {
        let caller = caller(&request)
            .map_err(|_| Error::Auth(sluice_auth::AuthError::MissingCredentials))?;
        let any = Any::decode(&*request.get_ref().cmd).map_err(|e| {
            Error::InvalidRequest(format!("descriptor is not a Flight SQL command: {e}"))
        })?;
        let command = Command::try_from(any).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let sql = match command {
            Command::CommandStatementQuery(q) => q.query,
            Command::CommandPreparedStatementQuery(p) => {
                self.prepared(&caller, &p.prepared_statement_handle)?.sql
            }
            other => {
                let type_url = other.type_url().to_string();
                return match MetadataCommand::of(other) {
                    Some(metadata) => Ok(metadata.schema().as_ref().clone()),
                    None => Err(Error::Unsupported(format!(
                        "GetSchema is not supported for {type_url}"
                    ))),
                };
            }
        };
        Ok(match self.plan(&caller, &sql).await? {
            PlannedStatement::Query(q) => q.schema().as_ref().clone(),
            PlannedStatement::Set { .. } => Schema::empty(),
        })
    }
}

type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FlightSqlService for SluiceSqlService {
    type FlightService = SluiceSqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Basic logs in; a bearer (static token, JWT, session) is exchanged for a session
        // token, which ends no later than a JWT it came from.
        let (session, principal) = self.auth.login(header.as_deref()).map_err(Error::from)?;
        info!(
            principal = %principal.name(),
            role = %principal.role(),
            expires_in_s = session.expires_in.as_secs(),
            "login"
        );
        let token = session.token;
        let bearer = format!("Bearer {token}");
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let mut response =
            Response::new(Box::pin(futures::stream::iter([Ok(response)])) as HandshakeStream);
        let value = MetadataValue::try_from(bearer.as_str())
            .map_err(|_| Status::internal("token is not a valid header value"))?;
        response.metadata_mut().insert("authorization", value);
        response.metadata_mut().insert(
            "sluice-session-expires-in",
            MetadataValue::from(session.expires_in.as_secs()),
        );
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = caller(&request)?;
        let info = self
            .statement_info(&caller, &query.query, None, None, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = caller(&request)?;
        let prepared = self.prepared(&caller, &cmd.prepared_statement_handle)?;
        let info = self
            .statement_info(
                &caller,
                &prepared.sql,
                prepared.params,
                Some(&prepared.first_plan),
                request.into_inner(),
            )
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = caller(&request)?;
        let stream = self.redeem(&caller, &ticket.statement_handle).await?;
        Ok(Response::new(stream))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = caller(&request)?;
        let stream = self
            .run_prepared(&caller, &cmd.prepared_statement_handle)
            .await?;
        Ok(Response::new(stream))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = caller(&request)?;
        Ok(self.prepare(&caller, query.query).await?)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = caller(&request)?;
        self.close_prepared(&caller, &query.prepared_statement_handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = caller(&request)?;
        let handle = self
            .bind_parameters(
                &caller,
                &cmd.prepared_statement_handle,
                request.into_inner(),
            )
            .await?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = caller(&request)?;
        let prepared = self.prepared(&caller, &cmd.prepared_statement_handle)?;
        Ok(self.update(&caller, &prepared.sql).await?)
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = caller(&request)?;
        Ok(self.update(&caller, &cmd.query).await?)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = caller(&request)?;
        Ok(self.ingest(&caller, cmd, request.into_inner()).await?)
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(Error::Unsupported(
            "transactions are not supported: Sluice is read-only; use autocommit".into(),
        )
        .into())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        caller(&request)?;
        let info = FlightInfo::decode(&*query.info)
            .map_err(|e| Error::InvalidRequest(format!("CancelQuery: {e}")))?;
        Ok(ActionCancelQueryResult {
            // CancelResult: 1 = cancelled, 3 = not cancellable
            result: if self.cancel(&info) { 1 } else { 3 },
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let caller = caller(&request)?;
        Ok(self.action(&caller, request.into_inner())?)
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(custom_actions().into_iter().map(Ok).collect())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::Catalogs(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::DbSchemas(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::Tables(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::TableTypes(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::SqlInfo(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::PrimaryKeys(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::ExportedKeys(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::ImportedKeys(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::CrossReference(query).flight_info(request.into_inner())?)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(MetadataCommand::XdbcTypeInfo(query).flight_info(request.into_inner())?)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::Catalogs(query).answer()?)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::DbSchemas(query).answer()?)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::Tables(query).answer()?)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::TableTypes(query).answer()?)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::SqlInfo(query).answer()?)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::PrimaryKeys(query).answer()?)
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::ExportedKeys(query).answer()?)
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::ImportedKeys(query).answer()?)
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::CrossReference(query).answer()?)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(MetadataCommand::XdbcTypeInfo(query).answer()?)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
