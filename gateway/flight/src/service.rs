//! The Flight SQL service: arrow-flight's `FlightSqlService`, overriding only the commands
//! Sluice answers. Every call reaching it has been authenticated by
//! [`crate::SluiceFlightService`], which leaves the [`Caller`] in the request's extensions.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
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
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::{Stream, TryStreamExt};
use prost::Message;
use sluice_auth::{Authenticator, Principal};
use sluice_planner::{IngestTarget, PlannedStatement, Query, QueryEngine, SessionSettings};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, Span, info, info_span};

use crate::admission::Admission;
use crate::audit::{AuditLog, AuditRecord};
use crate::error::{Error, Result};
use crate::limits::ConcurrencyLimiter;
use crate::metadata::{self, KeyFilter, SQL_INFO, XDBC_TYPES};
use crate::results::{QueryContext, ResultStream};
use crate::session::{Ahead, FirstPlan, Prepared, Sessions};
use crate::session_options::{
    CANCEL_FLIGHT_INFO, CLOSE_SESSION, CloseSessionResult, CloseSessionStatus, ErrorValue,
    GET_SESSION_OPTIONS, GetSessionOptionsResult, SET_SESSION_OPTIONS, SessionOptionValue,
    SetSessionOptionError, SetSessionOptionsRequest, SetSessionOptionsResult,
};

/// A query routed and started, and what its FlightInfo says of it.
struct StartedQuery {
    ticket: Vec<u8>,
    stream: DoGetStream,
    schema: SchemaRef,
    /// The manifest as JSON, for the FlightInfo's `app_metadata`.
    manifest: String,
}

/// Who is calling: set by the authentication layer on every request but Handshake.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) principal: Arc<Principal>,
    /// The `authorization` header: sessions are keyed by it.
    pub(crate) session_key: String,
}

type DoGetStream = <SluiceSqlService as FlightService>::DoGetStream;

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

fn schema_bytes(schema: &Schema) -> Result<Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Error::Encode(e.to_string()))?;
    Ok(bytes)
}

/// A FlightInfo with one endpoint whose ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    descriptor: FlightDescriptor,
    total_records: i64,
) -> Result<FlightInfo> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Error::Encode(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(total_records))
}

/// The answer to a statement that returns no rows: no endpoints, so no DoGet.
fn update_info(descriptor: FlightDescriptor, records: i64) -> Result<FlightInfo> {
    Ok(FlightInfo::new()
        .try_with_schema(&Schema::empty())
        .map_err(|e| Error::Encode(e.to_string()))?
        .with_descriptor(descriptor)
        .with_total_records(records))
}

/// Ingest appends to `streams`, which always exists: the ADBC modes `append` and
/// `create_append` are accepted, the others refused with what to do instead.
fn check_ingest_options(cmd: &CommandStatementIngest) -> Result<()> {
    use arrow_flight::sql::TableExistsOption;
    if cmd.temporary {
        return Err(Error::Unsupported(
            "ingest into a temporary table is not supported; ingest into streams".into(),
        ));
    }
    if cmd.transaction_id.is_some() {
        return Err(Error::Unsupported(
            "transactions are not supported: ingest with autocommit".into(),
        ));
    }
    let exists = cmd
        .table_definition_options
        .as_ref()
        .map_or(TableExistsOption::Append, |o| o.if_exists());
    match exists {
        TableExistsOption::Append | TableExistsOption::Unspecified => Ok(()),
        TableExistsOption::Fail => Err(Error::InvalidRequest(format!(
            "table '{}' already exists; ingest with mode 'append'",
            cmd.table
        ))),
        TableExistsOption::Replace => Err(Error::Unsupported(format!(
            "ingest may not replace '{}'; ingest with mode 'append'",
            cmd.table
        ))),
    }
}

/// Streams one metadata batch.
fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// One parameter row (the first row of `batch`) as scalars.
fn parameter_row(batches: &[RecordBatch]) -> Result<Option<Vec<ScalarValue>>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    match rows {
        0 => Ok(None),
        1 => {
            let batch = batches.iter().find(|b| b.num_rows() == 1).expect("one row");
            batch
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, 0))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Some)
                .map_err(|e| Error::InvalidRequest(format!("parameters: {e}")))
        }
        n => Err(Error::InvalidRequest(format!(
            "{n} parameter rows bound to a query; a query takes one row of parameters"
        ))),
    }
}

/// Casts bound values to the types the statement expects where Arrow can (a string for a
/// timestamp, an integer for a float); anything else is the caller's type error.
fn coerce_parameters(query: &Query, values: Vec<ScalarValue>) -> Result<Vec<ScalarValue>> {
    let expected = query.parameter_schema()?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match expected.fields().get(i) {
            Some(f) if !f.data_type().is_null() && &v.data_type() != f.data_type() => {
                v.cast_to(f.data_type()).map_err(|_| {
                    Error::InvalidRequest(format!(
                        "parameter ${}: expected {}, got {} value {v}",
                        i + 1,
                        f.data_type(),
                        v.data_type()
                    ))
                })
            }
            _ => Ok(v),
        })
        .collect()
}

/// The span of one query, from planning to its last batch: its phases (`plan`, `route`,
/// `execute`, `stream`) are its children, and its outcome, route and rows are recorded on
/// it at the end. Exported as one trace when OTLP is configured.
pub(crate) fn query_span(caller: &Caller) -> Span {
    info_span!(
        "query",
        principal = %caller.principal.name(),
        role = %caller.principal.role(),
        route = tracing::field::Empty,
        outcome = tracing::field::Empty,
        rows = tracing::field::Empty,
    )
}

impl SluiceSqlService {
    async fn plan(&self, caller: &Caller, sql: &str) -> Result<PlannedStatement> {
        self.plan_with(caller, &self.settings(caller), sql).await
    }

    fn settings(&self, caller: &Caller) -> SessionSettings {
        self.sessions
            .with(&caller.session_key, |s| s.settings.clone())
    }

    /// Plans `sql` with the session `settings` the caller read.
    async fn plan_with(
        &self,
        caller: &Caller,
        settings: &SessionSettings,
        sql: &str,
    ) -> Result<PlannedStatement> {
        self.admission.check_open()?;
        let span = info_span!("plan", principal = %caller.principal.name());
        let started = std::time::Instant::now();
        let planned = self
            .engine
            .plan(&caller.principal, settings, sql)
            .instrument(span)
            .await
            .map_err(Error::from);
        if let Err(e) = &planned {
            self.audit_refusal(caller, sql, e, started);
        }
        planned
    }

    fn apply_setting(&self, caller: &Caller, name: &str, value: &str) -> Result<()> {
        self.sessions
            .with(&caller.session_key, |s| s.settings.set(name, value))?;
        info!(principal = %caller.principal.name(), setting = name, value, "session setting");
        Ok(())
    }

    /// Answers GetFlightInfo for a statement: rows get a ticket, SET is applied here. A
    /// statement refused here is audited here; one that runs is audited when it ends.
    /// What a prepared statement's CreatePreparedStatement did ahead (`first_plan`: the
    /// plan, or the query started) serves instead when it is still good.
    async fn statement_info(
        &self,
        caller: &Caller,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
        first_plan: Option<&FirstPlan>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo> {
        let settings = self.settings(caller);
        let ahead = match first_plan.and_then(|p| p.take(&settings)) {
            Some((
                Ahead::Started {
                    ticket,
                    schema,
                    manifest,
                    ingests,
                },
                usable,
            )) => {
                if let Err(e) = self.admission.check_open() {
                    self.sessions.discard_unclaimed(&ticket);
                    return Err(e);
                }
                let usable = usable
                    && params.is_none()
                    && ingests == self.ingests.load(Ordering::Acquire)
                    && self.sessions.claim(&ticket, &caller.principal);
                if usable {
                    let ticket = TicketStatementQuery {
                        statement_handle: ticket.into(),
                    };
                    return Ok(
                        flight_info(&schema, ticket, descriptor, -1)?.with_app_metadata(manifest)
                    );
                }
                // Stale: it runs again, from a new plan.
                self.sessions.discard_unclaimed(&ticket);
                None
            }
            Some((Ahead::Planned(query, span), true)) => Some((query, span)),
            _ => None,
        };
        let (statement, span) = match ahead {
            // Planned by the prepare, in this span: its trace shows the phase there.
            Some((query, span)) => {
                self.admission.check_open()?;
                (PlannedStatement::Query(query), span)
            }
            None => {
                let span = query_span(caller);
                let planned = self
                    .plan_with(caller, &settings, sql)
                    .instrument(span.clone())
                    .await?;
                (planned, span)
            }
        };
        let started = std::time::Instant::now();
        let result = self
            .describe_statement(caller, statement, params, descriptor, span)
            .await;
        if let Err(e) = &result {
            self.audit_refusal(caller, sql, e, started);
        }
        result
    }

    /// What CreatePreparedStatement does ahead for a query: plans it, and, without
    /// parameters to wait for and with `[server] start_at_prepare`, starts it (a place
    /// among the running queries and the principal's permit permitting), so its sources
    /// are read while the client receives the prepared statement and asks for its
    /// FlightInfo, as ADBC and JDBC do at once. Whatever cannot be done now is done by the
    /// GetFlightInfo, which also reports its errors.
    async fn prepare_ahead(
        &self,
        caller: &Caller,
        query: Query,
        settings: SessionSettings,
        has_parameters: bool,
        span: Span,
    ) -> FirstPlan {
        if !self.start_at_prepare || has_parameters {
            return FirstPlan::new(Ahead::Planned(Box::new(query), span), settings);
        }
        // Counted before the query reads anything: an ingest that ends after this makes
        // the GetFlightInfo run the query again.
        let ingests = self.ingests.load(Ordering::Acquire);
        match self.route_and_start(caller, query, span, false).await {
            Ok(StartedQuery {
                ticket,
                stream,
                schema,
                manifest,
            }) => {
                self.sessions
                    .park_unclaimed(ticket.clone(), stream, Arc::clone(&caller.principal));
                // A drain that began meanwhile stopped the others; no claim will come.
                if self.admission.is_draining() {
                    self.sessions.discard_unclaimed(&ticket);
                    return FirstPlan::default();
                }
                let ahead = Ahead::Started {
                    ticket,
                    schema,
                    manifest,
                    ingests,
                };
                FirstPlan::new(ahead, settings)
            }
            Err(_) => FirstPlan::default(),
        }
    }

    /// Audits a statement that ended before it ran.
    fn audit_refusal(&self, caller: &Caller, sql: &str, e: &Error, started: std::time::Instant) {
        let outcome = if e.is_failure() { "failed" } else { "refused" };
        // Busy and shutting-down refusals are counted where they are refused, under their
        // own outcome.
        if !matches!(e, Error::Busy(_) | Error::ShuttingDown) {
            sluice_metrics::QUERIES
                .with_label_values(&[outcome, "none"])
                .inc();
        }
        let mut record =
            AuditRecord::new(&caller.principal, sql, outcome).elapsed(started.elapsed());
        let message = e.to_string();
        record.error = Some(&message);
        self.audit.record(&record);
    }

    /// Answers a statement's GetFlightInfo. A query starts here, not at its DoGet: its
    /// sources are read while the FlightInfo travels to the client and the DoGet comes back
    /// (every client follows one with the other at once), and the ticket holds the running
    /// stream.
    async fn describe_statement(
        &self,
        caller: &Caller,
        statement: PlannedStatement,
        params: Option<Vec<ScalarValue>>,
        descriptor: FlightDescriptor,
        span: Span,
    ) -> Result<FlightInfo> {
        match statement {
            PlannedStatement::Set { name, value } => {
                self.apply_setting(caller, &name, &value)?;
                update_info(descriptor, 0)
            }
            PlannedStatement::Query(query) => {
                let query = *query;
                let query = match params {
                    Some(values) => {
                        let values = coerce_parameters(&query, values)?;
                        query.bind(values)?
                    }
                    None => query,
                };
                // The route is chosen now, so the FlightInfo can say how the result is
                // computed (its app_metadata: the manifest as JSON).
                let StartedQuery {
                    ticket,
                    stream,
                    schema,
                    manifest,
                } = self.route_and_start(caller, query, span, true).await?;
                self.sessions
                    .park(ticket.clone(), stream, Arc::clone(&caller.principal));
                let ticket = TicketStatementQuery {
                    statement_handle: ticket.into(),
                };
                Ok(flight_info(&schema, ticket, descriptor, -1)?.with_app_metadata(manifest))
            }
        }
    }

    /// Runs a planned query and streams its batches, within the principal's limits.
    async fn run(
        &self,
        caller: &Caller,
        query: Query,
        ticket: Vec<u8>,
        span: Span,
    ) -> Result<DoGetStream> {
        let started = std::time::Instant::now();
        let sql = query.sql().to_string();
        let result = self.start(caller, query, &sql, ticket, span, true).await;
        if let Err(e) = &result {
            self.audit_refusal(caller, &sql, e, started);
        }
        result
    }

    /// Routes a query (the hot/cold split, rollups, federation: the FlightInfo then says
    /// how its result is computed) and starts it under a new ticket.
    async fn route_and_start(
        &self,
        caller: &Caller,
        mut query: Query,
        span: Span,
        asked: bool,
    ) -> Result<StartedQuery> {
        // Each phase runs inside the query span: a span's end is its last exit.
        span.in_scope(|| info_span!("route").in_scope(|| query.optimize()))?;
        let schema = query.schema();
        let manifest = query.manifest().to_json();
        // Tickets never redeemed give back their place before this query takes one.
        self.sessions.drop_expired_tickets();
        let ticket = Sessions::new_ticket_id();
        let sql = query.sql().to_string();
        let stream = self
            .start(caller, query, &sql, ticket.clone(), span, asked)
            .await?;
        Ok(StartedQuery {
            ticket,
            stream,
            schema,
            manifest,
        })
    }

    /// Starts a query: takes its place among the running queries and the principal's
    /// permit, and hands it to the query runtime, which plans it physically and reads its
    /// sources while this call returns. A query that was asked for
    /// (`asked`, not one started ahead at prepare) may take the places of queries started
    /// ahead that nobody claimed yet.
    async fn start(
        &self,
        caller: &Caller,
        query: Query,
        sql: &str,
        ticket: Vec<u8>,
        span: Span,
        asked: bool,
    ) -> Result<DoGetStream> {
        let active = match self.admission.try_admit() {
            Some(active) => active,
            // Ahead of its GetFlightInfo, a query waits for a free place there instead.
            None if !asked => return Err(Error::Busy("no free place to start ahead".into())),
            None => {
                self.sessions.discard_unclaimed_of(None);
                self.admission.admit()?
            }
        };
        let permit = match self.limiter.acquire(&caller.principal) {
            Err(Error::Limit(_))
                if asked && self.sessions.discard_unclaimed_of(Some(&caller.principal)) =>
            {
                self.limiter.acquire(&caller.principal)?
            }
            other => other?,
        };
        let schema: SchemaRef = query.schema();
        let (stream, manifest) = query
            .execute()
            .instrument(info_span!(parent: &span, "execute"))
            .instrument(span.clone())
            .await?;
        info!(
            principal = %caller.principal.name(),
            role = %caller.principal.role(),
            route = %manifest.summary(),
            "query started"
        );
        let context = QueryContext {
            principal: Arc::clone(&caller.principal),
            sql: sql.to_string(),
            route: manifest.summary(),
            sources: manifest.sources.clone(),
            audit: Arc::clone(&self.audit),
            permit: Some(permit),
            route_label: manifest.route_label(),
            active: Some(active),
            span,
        };
        for rollup in &manifest.rollups {
            sluice_metrics::ROLLUP_READS
                .with_label_values(&[rollup.as_str()])
                .inc();
        }
        let batches = ResultStream::new(
            stream,
            Arc::clone(&schema),
            Arc::clone(&self.sessions),
            ticket,
            context,
        );
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Box::pin(flight))
    }

    fn prepared(&self, caller: &Caller, handle: &[u8]) -> Result<Prepared> {
        self.sessions
            .with(&caller.session_key, |s| s.prepared.get(handle).cloned())
            .ok_or(Error::UnknownPreparedStatement)
    }

    /// The schema a descriptor's command would return (GetSchema).
    pub(crate) async fn schema_for(&self, request: Request<FlightDescriptor>) -> Result<Schema> {
        let caller = caller(&request)
            .map_err(|_| Error::Auth(sluice_auth::AuthError::MissingCredentials))?;
        let any = Any::decode(&*request.get_ref().cmd).map_err(|e| {
            Error::InvalidRequest(format!("descriptor is not a Flight SQL command: {e}"))
        })?;
        let command = Command::try_from(any).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let sql_schema = |planned: PlannedStatement| match planned {
            PlannedStatement::Query(q) => q.schema().as_ref().clone(),
            PlannedStatement::Set { .. } => Schema::empty(),
        };
        Ok(match command {
            Command::CommandStatementQuery(q) => sql_schema(self.plan(&caller, &q.query).await?),
            Command::CommandPreparedStatementQuery(p) => {
                let prepared = self.prepared(&caller, &p.prepared_statement_handle)?;
                sql_schema(self.plan(&caller, &prepared.sql).await?)
            }
            Command::CommandGetCatalogs(_) => metadata::catalogs_schema().as_ref().clone(),
            Command::CommandGetDbSchemas(_) => metadata::db_schemas_schema().as_ref().clone(),
            Command::CommandGetTables(t) => {
                metadata::tables_schema(t.include_schema).as_ref().clone()
            }
            Command::CommandGetTableTypes(_) => metadata::table_types_schema().as_ref().clone(),
            Command::CommandGetSqlInfo(_) => SQL_INFO.schema().as_ref().clone(),
            Command::CommandGetXdbcTypeInfo(_) => XDBC_TYPES.schema().as_ref().clone(),
            Command::CommandGetPrimaryKeys(_) => metadata::primary_keys_schema().as_ref().clone(),
            Command::CommandGetExportedKeys(_)
            | Command::CommandGetImportedKeys(_)
            | Command::CommandGetCrossReference(_) => {
                metadata::foreign_keys_schema().as_ref().clone()
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "GetSchema is not supported for {}",
                    other.type_url()
                )));
            }
        })
    }

    fn cancel_ticket(&self, ticket: &[u8]) -> bool {
        let Ok(any) = Any::decode(ticket) else {
            return false;
        };
        match Command::try_from(any) {
            Ok(Command::TicketStatementQuery(t)) => self.sessions.cancel(&t.statement_handle),
            _ => false,
        }
    }

    fn session_options(&self, caller: &Caller) -> GetSessionOptionsResult {
        let mut options: std::collections::HashMap<String, SessionOptionValue> =
            self.sessions.with(&caller.session_key, |s| {
                s.settings
                    .iter()
                    .map(|(k, v)| (k.to_string(), SessionOptionValue::string(v)))
                    .collect()
            });
        options.insert(
            "catalog".into(),
            SessionOptionValue::string(sluice_catalog::CATALOG),
        );
        options.insert(
            "schema".into(),
            SessionOptionValue::string(sluice_catalog::SCHEMA),
        );
        GetSessionOptionsResult {
            session_options: options,
        }
    }

    fn set_session_options(
        &self,
        caller: &Caller,
        request: SetSessionOptionsRequest,
    ) -> SetSessionOptionsResult {
        let mut errors = std::collections::HashMap::new();
        for (name, value) in request.session_options {
            let error = match (name.as_str(), value.as_setting()) {
                (_, None) => Some(ErrorValue::InvalidValue),
                ("catalog", Some(v)) => {
                    (v != sluice_catalog::CATALOG).then_some(ErrorValue::InvalidValue)
                }
                ("schema", Some(v)) => {
                    (v != sluice_catalog::SCHEMA).then_some(ErrorValue::InvalidValue)
                }
                (_, Some(v)) => match self.apply_setting(caller, &name, &v) {
                    Ok(()) => None,
                    Err(Error::Query(sluice_planner::Error::Setting { problem, .. }))
                        if problem.starts_with("cannot be changed") =>
                    {
                        Some(ErrorValue::InvalidName)
                    }
                    Err(_) => Some(ErrorValue::InvalidValue),
                },
            };
            if let Some(e) = error {
                errors.insert(name, SetSessionOptionError { value: e as i32 });
            }
        }
        SetSessionOptionsResult { errors }
    }
}

fn one_result(body: impl Message) -> Response<<SluiceSqlService as FlightService>::DoActionStream> {
    let result = arrow_flight::Result {
        body: body.encode_to_vec().into(),
    };
    Response::new(Box::pin(futures::stream::iter([Ok(result)])))
}

#[tonic::async_trait]
impl FlightSqlService for SluiceSqlService {
    type FlightService = SluiceSqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
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
        let mut response = Response::new(Box::pin(futures::stream::iter([Ok(response)]))
            as Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>);
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
        let id = ticket.statement_handle.to_vec();
        let stream = self
            .sessions
            .take(&id, &caller.principal)
            .ok_or(Error::UnknownTicket)?;
        Ok(Response::new(stream))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = caller(&request)?;
        let prepared = self.prepared(&caller, &cmd.prepared_statement_handle)?;
        let span = query_span(&caller);
        match self
            .plan(&caller, &prepared.sql)
            .instrument(span.clone())
            .await?
        {
            PlannedStatement::Query(query) => {
                let query = *query;
                let query = match prepared.params {
                    Some(values) => {
                        let values = coerce_parameters(&query, values)?;
                        query.bind(values).map_err(Error::from)?
                    }
                    None => query,
                };
                let id = Sessions::new_ticket_id();
                Ok(Response::new(self.run(&caller, query, id, span).await?))
            }
            PlannedStatement::Set { .. } => Err(Error::InvalidRequest(
                "the statement returns no rows; there is nothing to fetch".into(),
            )
            .into()),
        }
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = caller(&request)?;
        let settings = self.settings(&caller);
        // The query's span starts here: its `plan` phase is this call's.
        let span = query_span(&caller);
        let planned = self
            .plan_with(&caller, &settings, &query.query)
            .instrument(span.clone())
            .await?;
        let (dataset_schema, parameter_schema, first_plan) = match planned {
            PlannedStatement::Query(q) => {
                let params = q.parameter_schema().map_err(Error::from)?;
                let has_parameters = !params.fields().is_empty();
                let params = if has_parameters {
                    schema_bytes(&params)?
                } else {
                    Bytes::new()
                };
                let dataset_schema = schema_bytes(&q.schema())?;
                let first_plan = self
                    .prepare_ahead(&caller, *q, settings, has_parameters, span)
                    .await;
                (dataset_schema, params, first_plan)
            }
            // JDBC takes an empty dataset schema to mean an update.
            PlannedStatement::Set { .. } => (Bytes::new(), Bytes::new(), FirstPlan::default()),
        };
        let handle = rand::random::<[u8; 16]>().to_vec();
        self.sessions.with(&caller.session_key, |s| {
            s.prepared.insert(
                handle.clone(),
                Prepared {
                    sql: query.query,
                    params: None,
                    first_plan,
                },
            )
        });
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = caller(&request)?;
        let closed = self.sessions.with(&caller.session_key, |s| {
            s.prepared.remove(query.prepared_statement_handle.as_ref())
        });
        // A query it started that no GetFlightInfo claimed stops now.
        if let Some(closed) = closed {
            closed.first_plan.discard(&self.sessions);
        }
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = caller(&request)?;
        let handle = cmd.prepared_statement_handle.to_vec();
        self.prepared(&caller, &handle)?;
        let stream = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .map_err(|e| Error::InvalidRequest(format!("reading parameters: {e}")))?;
        let params = parameter_row(&batches)?;
        let found = self.sessions.with(&caller.session_key, |s| {
            s.prepared
                .get_mut(&handle)
                .map(|p| p.params = params)
                .is_some()
        });
        if !found {
            return Err(Error::UnknownPreparedStatement.into());
        }
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
        match self.plan(&caller, &prepared.sql).await? {
            PlannedStatement::Set { name, value } => {
                self.apply_setting(&caller, &name, &value)?;
                Ok(0)
            }
            PlannedStatement::Query(_) => Err(Error::InvalidRequest(
                "the statement returns rows; execute it as a query".into(),
            )
            .into()),
        }
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = caller(&request)?;
        match self.plan(&caller, &cmd.query).await? {
            PlannedStatement::Set { name, value } => {
                self.apply_setting(&caller, &name, &value)?;
                Ok(0)
            }
            PlannedStatement::Query(_) => Err(Error::InvalidRequest(
                "the statement returns rows; execute it as a query".into(),
            )
            .into()),
        }
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = caller(&request)?;
        let target = IngestTarget {
            catalog: cmd.catalog.clone(),
            schema: cmd.schema.clone(),
            table: cmd.table.clone(),
        };
        self.engine
            .check_ingest(&caller.principal, &target)
            .map_err(Error::from)?;
        check_ingest_options(&cmd)?;
        let span = info_span!("ingest", principal = %caller.principal.name(), table = %cmd.table);
        async move {
            let stream = request.into_inner().map_err(FlightError::from);
            let mut batches = FlightRecordBatchStream::new_from_flight_data(stream);
            let (mut rows, mut added) = (0u64, 0u64);
            while let Some(batch) = batches
                .try_next()
                .await
                .map_err(|e| Error::InvalidRequest(format!("reading events: {e}")))?
            {
                rows += batch.num_rows() as u64;
                let ingested = self.engine.ingest(&batch).await;
                // Counted even on failure: part of the batch may be in.
                self.ingests.fetch_add(1, Ordering::AcqRel);
                added += ingested.map_err(Error::from)?;
            }
            info!(rows, added, "ingested");
            Ok(added as i64)
        }
        .instrument(span)
        .await
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
        let _ = caller(&request)?;
        let info = FlightInfo::decode(&*query.info)
            .map_err(|e| Error::InvalidRequest(format!("CancelQuery: {e}")))?;
        let cancelled = info
            .endpoint
            .iter()
            .filter_map(|e| e.ticket.as_ref())
            .any(|t| self.cancel_ticket(&t.ticket));
        Ok(ActionCancelQueryResult {
            // CancelResult: 1 = cancelled, 3 = not cancellable
            result: if cancelled { 1 } else { 3 },
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let caller = caller(&request)?;
        let action = request.into_inner();
        let invalid = |what: &str, e: prost::DecodeError| {
            Status::from(Error::InvalidRequest(format!("{what}: {e}")))
        };
        match action.r#type.as_str() {
            SET_SESSION_OPTIONS => {
                let req = SetSessionOptionsRequest::decode(&*action.body)
                    .map_err(|e| invalid(SET_SESSION_OPTIONS, e))?;
                Ok(one_result(self.set_session_options(&caller, req)))
            }
            GET_SESSION_OPTIONS => Ok(one_result(self.session_options(&caller))),
            CLOSE_SESSION => {
                self.sessions.close(&caller.session_key);
                self.auth.close_session(&caller.session_key);
                Ok(one_result(CloseSessionResult {
                    status: CloseSessionStatus::Closed as i32,
                }))
            }
            CANCEL_FLIGHT_INFO => {
                let req = CancelFlightInfoRequest::decode(&*action.body)
                    .map_err(|e| invalid(CANCEL_FLIGHT_INFO, e))?;
                let cancelled = req
                    .info
                    .iter()
                    .flat_map(|i| i.endpoint.iter())
                    .filter_map(|e| e.ticket.as_ref())
                    .any(|t| self.cancel_ticket(&t.ticket));
                let status = if cancelled {
                    CancelStatus::Cancelled
                } else {
                    CancelStatus::NotCancellable
                };
                Ok(one_result(CancelFlightInfoResult::new(status)))
            }
            other => Err(Error::Unsupported(format!("unknown action '{other}'")).into()),
        }
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        };
        Some(vec![
            action(
                SET_SESSION_OPTIONS,
                "Set session options (DataFusion settings).",
            ),
            action(GET_SESSION_OPTIONS, "Get the session's options."),
            action(CLOSE_SESSION, "Close the session and its token."),
            action(CANCEL_FLIGHT_INFO, "Cancel a query by its FlightInfo."),
        ])
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::catalogs_schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::db_schemas_schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::tables_schema(query.include_schema);
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::table_types_schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = SQL_INFO.schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::primary_keys_schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::foreign_keys_schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::foreign_keys_schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::foreign_keys_schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = XDBC_TYPES.schema();
        Ok(Response::new(flight_info(
            &schema,
            query,
            request.into_inner(),
            -1,
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(metadata::catalogs(query)?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(metadata::db_schemas(query)?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(metadata::tables_result(query)?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(metadata::table_types(query)?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = SQL_INFO
            .record_batch(query.info)
            .map_err(|e| Error::Encode(e.to_string()))?;
        Ok(batch_stream(batch))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::primary_keys(&query.catalog, &query.db_schema, &query.table)?;
        Ok(batch_stream(batch))
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::foreign_keys(
            &query.catalog,
            &query.db_schema,
            KeyFilter::Exported(&query.table),
        )?;
        Ok(batch_stream(batch))
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::foreign_keys(
            &query.catalog,
            &query.db_schema,
            KeyFilter::Imported(&query.table),
        )?;
        Ok(batch_stream(batch))
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        // Both sides live in sluice.public; a reference elsewhere matches nothing.
        let same_place =
            query.pk_catalog == query.fk_catalog && query.pk_db_schema == query.fk_db_schema;
        let catalog = if same_place {
            query.fk_catalog.clone()
        } else {
            Some(String::new())
        };
        let batch = metadata::foreign_keys(
            &catalog,
            &query.fk_db_schema,
            KeyFilter::Cross {
                pk: &query.pk_table,
                fk: &query.fk_table,
            },
        )?;
        Ok(batch_stream(batch))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = XDBC_TYPES
            .record_batch(query.data_type)
            .map_err(|e| Error::Encode(e.to_string()))?;
        Ok(batch_stream(batch))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
