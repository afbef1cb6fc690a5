//! A statement's life, from SQL to a running query: planned (and audited if refused),
//! parameters bound, routed and started in one place ([`SluiceSqlService::start`]), its
//! stream parked under a ticket until its DoGet. The handlers in `service.rs` call in here.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow_flight::FlightDescriptor;
use arrow_flight::FlightInfo;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionCreatePreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use futures::TryStreamExt;
use sluice_planner::{PlannedStatement, Query, SessionSettings};
use tonic::Status;
use tracing::{Instrument, Span, info, info_span};

use crate::audit::AuditRecord;
use crate::client_state::{PreparedHandle, QueryTicket};
use crate::error::{Error, Result};
use crate::flight_info::{flight_info, schema_bytes, update_info};
use crate::results::{QueryContext, ResultStream};
use crate::service::{Caller, DoGetStream, SluiceSqlService};
use crate::session::{Ahead, FirstPlan, LocalPrepared, Prepared, Sessions, TICKET_TTL};

/// A query routed and started, and what its FlightInfo says of it.
struct StartedQuery {
    /// Its id here (the local part of its ticket).
    ticket: Vec<u8>,
    stream: DoGetStream,
    schema: SchemaRef,
    /// The manifest as JSON, for the FlightInfo's `app_metadata`.
    manifest: String,
    watermark_ms: i64,
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

/// `query` with `params` bound, each cast to the type the statement expects where Arrow can
/// (a string for a timestamp, an integer for a float); anything else is the caller's type
/// error.
fn bind(query: Query, params: Option<Vec<ScalarValue>>) -> Result<Query> {
    let Some(values) = params else {
        return Ok(query);
    };
    let expected = query.parameter_schema()?;
    let values = values
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
        .collect::<Result<Vec<_>>>()?;
    Ok(query.bind(values)?)
}

impl SluiceSqlService {
    /// The settings the caller's session has changed: the newer of what its token carries
    /// and what this replica saw last.
    pub(crate) fn settings(&self, caller: &Caller) -> Result<SessionSettings> {
        self.sessions.with(caller.session_key(), |s| {
            s.catch_up(&caller.session)?;
            Ok(s.settings.clone())
        })
    }

    /// Plans `sql` with the caller's session settings.
    pub(crate) async fn plan(&self, caller: &Caller, sql: &str) -> Result<PlannedStatement> {
        self.plan_with(caller, &self.settings(caller)?, sql, None)
            .await
    }

    /// Plans `sql` with the session `settings` the caller read, at the current `W` or at
    /// `watermark_ms` (a ticket's).
    async fn plan_with(
        &self,
        caller: &Caller,
        settings: &SessionSettings,
        sql: &str,
        watermark_ms: Option<i64>,
    ) -> Result<PlannedStatement> {
        self.admission.check_open()?;
        let span = info_span!("plan", principal = %caller.principal.name());
        let planning = self
            .engine
            .plan_at(&caller.principal, settings, sql, watermark_ms);
        self.audited(caller, sql, async { Ok(planning.instrument(span).await?) })
            .await
    }

    /// Runs one step of a statement's life that can refuse it; a refusal is audited here,
    /// once (a statement that runs is audited when its stream ends).
    async fn audited<T>(
        &self,
        caller: &Caller,
        sql: &str,
        step: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = step.await;
        if let Err(e) = &result {
            let outcome = if e.is_failure() { "failed" } else { "refused" };
            // Busy and shutting-down refusals are counted where they are refused, under
            // their own outcome.
            if !matches!(e, Error::Busy(_) | Error::ShuttingDown) {
                sluice_metrics::QUERIES
                    .with_label_values(&[outcome, "none"])
                    .inc();
            }
            let mut record =
                AuditRecord::new(&caller.principal, sql, outcome).elapsed(started.elapsed());
            let message = e.to_string();
            record.error = Some(&message);
            record.client = caller.client.as_deref();
            self.audit.record(&record);
        }
        result
    }

    /// Changes a setting of the caller's session, here and in a session token reissued
    /// with the reply, which carries it to the other replicas.
    pub(crate) fn apply_setting(&self, caller: &Caller, name: &str, value: &str) -> Result<()> {
        let (settings, version) = self.sessions.with(caller.session_key(), |s| {
            s.catch_up(&caller.session)?;
            s.settings.set(name, value)?;
            s.version += 1;
            Ok::<_, Error>((s.settings.clone(), s.version))
        })?;
        let pairs = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let session = caller.session.clone().with_settings(pairs, version);
        caller.reply_token.set(self.auth.reissue(&session).token);
        info!(principal = %caller.principal.name(), setting = name, value, "session setting");
        Ok(())
    }

    /// A statement sent to change a setting (DoPut of an update): SET is applied, a query
    /// refused.
    pub(crate) async fn update(&self, caller: &Caller, sql: &str) -> Result<i64> {
        match self.plan(caller, sql).await? {
            PlannedStatement::Set { name, value } => {
                self.apply_setting(caller, &name, &value)?;
                Ok(0)
            }
            PlannedStatement::Query(_) => Err(Error::InvalidRequest(
                "the statement returns rows; execute it as a query".into(),
            )),
        }
    }

    /// The prepared statement of `handle`, with the parameters bound last (by the handle,
    /// or here) and, if this replica prepared it, what it did ahead.
    pub(crate) fn prepared(&self, caller: &Caller, handle: &[u8]) -> Result<Prepared> {
        let handle = PreparedHandle::open(self.auth.sealer(), handle, &caller.principal)?;
        let local = self.sessions.with(caller.session_key(), |s| {
            s.prepared.get(&handle.id).cloned()
        });
        let (params, first_plan) = match local {
            Some(local) if local.binds >= handle.binds => (local.params, local.first_plan),
            Some(local) => (handle.params()?, local.first_plan),
            None => (handle.params()?, FirstPlan::default()),
        };
        Ok(Prepared {
            sql: handle.sql,
            params,
            first_plan,
        })
    }

    /// Closes a prepared statement: a query it started that no GetFlightInfo claimed stops.
    pub(crate) fn close_prepared(&self, caller: &Caller, handle: &[u8]) {
        // A handle that does not open (expired, say) has nothing here to close.
        let Ok(handle) = PreparedHandle::open(self.auth.sealer(), handle, &caller.principal) else {
            return;
        };
        let closed = self
            .sessions
            .with(caller.session_key(), |s| s.prepared.remove(&handle.id));
        if let Some(closed) = closed {
            closed.first_plan.discard(&self.sessions);
        }
    }

    /// The sealed ticket of a query started here under `id`, which any replica redeems.
    fn ticket(
        &self,
        caller: &Caller,
        id: Vec<u8>,
        sql: &str,
        params: Option<&[ScalarValue]>,
        settings: &SessionSettings,
        watermark_ms: i64,
    ) -> Result<Vec<u8>> {
        let ticket = QueryTicket::new(id, &caller.principal, sql, params, settings, watermark_ms)?;
        Ok(ticket.seal(self.auth.sealer(), TICKET_TTL))
    }

    /// DoGet of a ticket: the query started for it here, or, issued by another replica (or
    /// fetched already), the same query run again at the ticket's `W` and settings.
    pub(crate) async fn redeem(&self, caller: &Caller, ticket: &[u8]) -> Result<DoGetStream> {
        let ticket = QueryTicket::open(self.auth.sealer(), ticket, &caller.principal)?;
        if let Some(stream) = self.sessions.take(&ticket.id, &caller.principal) {
            return Ok(stream);
        }
        // Cancelled means cancelled (on this replica; others do not know of it).
        if self.sessions.was_cancelled(&ticket.id) {
            return Err(Error::UnknownTicket);
        }
        let settings = ticket.settings()?;
        let span = query_span(caller);
        let planned = self
            .plan_with(caller, &settings, &ticket.sql, Some(ticket.watermark_ms))
            .instrument(span.clone())
            .await?;
        let PlannedStatement::Query(query) = planned else {
            return Err(Error::UnknownTicket);
        };
        self.audited(caller, &ticket.sql, async {
            let query = bind(*query, ticket.params()?)?;
            Ok(self.start(caller, query, span, true).await?.stream)
        })
        .await
    }

    /// Answers GetFlightInfo for a statement: rows get a ticket, SET is applied here. What
    /// a prepared statement's CreatePreparedStatement did ahead (`first_plan`: the plan, or
    /// the query started) serves instead when it is still good.
    pub(crate) async fn statement_info(
        &self,
        caller: &Caller,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
        first_plan: Option<&FirstPlan>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo> {
        let settings = self.settings(caller)?;
        let ahead = match first_plan.and_then(|p| p.take(&settings)) {
            Some((
                Ahead::Started {
                    ticket,
                    schema,
                    manifest,
                    ingests,
                    watermark_ms,
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
                    let ticket = self.ticket(caller, ticket, sql, None, &settings, watermark_ms)?;
                    return parked_info(ticket, &schema, manifest, descriptor);
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
                    .plan_with(caller, &settings, sql, None)
                    .instrument(span.clone())
                    .await?;
                (planned, span)
            }
        };
        self.audited(caller, sql, async {
            match statement {
                PlannedStatement::Set { name, value } => {
                    self.apply_setting(caller, &name, &value)?;
                    update_info(descriptor)
                }
                // A query starts here, not at its DoGet: its sources are read while the
                // FlightInfo travels to the client and the DoGet comes back (every client
                // follows one with the other at once). The route is chosen now, so the
                // FlightInfo can say how the result is computed.
                PlannedStatement::Query(query) if !self.starts_ahead() => {
                    let mut query = bind(*query, params.clone())?;
                    route(&mut query, &span)?;
                    let manifest = query.manifest().to_json();
                    let ticket = self.ticket(
                        caller,
                        Sessions::new_ticket_id(),
                        sql,
                        params.as_deref(),
                        &settings,
                        query.watermark_ms(),
                    )?;
                    parked_info(ticket, &query.schema(), manifest, descriptor)
                }
                PlannedStatement::Query(query) => {
                    let query = bind(*query, params.clone())?;
                    let started = self.start(caller, query, span, true).await?;
                    self.sessions.park(
                        started.ticket.clone(),
                        started.stream,
                        Arc::clone(&caller.principal),
                    );
                    let ticket = self.ticket(
                        caller,
                        started.ticket,
                        sql,
                        params.as_deref(),
                        &settings,
                        started.watermark_ms,
                    )?;
                    parked_info(ticket, &started.schema, started.manifest, descriptor)
                }
            }
        })
        .await
    }

    /// Whether a query starts before its DoGet (at GetFlightInfo, or at prepare): only
    /// when the DoGet comes back here. Replicas sharing a `replica_secret` may each serve
    /// it, and a query started for a DoGet served elsewhere would run twice and hold a
    /// place and its principal's permit until its ticket expired; they run the query at
    /// its DoGet instead (its FlightInfo is planned and routed, not run).
    fn starts_ahead(&self) -> bool {
        !self.auth.sealer().is_shared()
    }

    /// CreatePreparedStatement: plans the statement, keeps it in the session, and starts
    /// what it can ahead ([`Self::prepare_ahead`]).
    pub(crate) async fn prepare(
        &self,
        caller: &Caller,
        sql: String,
    ) -> Result<ActionCreatePreparedStatementResult> {
        let settings = self.settings(caller)?;
        // The query's span starts here: its `plan` phase is this call's.
        let span = query_span(caller);
        let planned = self
            .plan_with(caller, &settings, &sql, None)
            .instrument(span.clone())
            .await?;
        let (dataset_schema, parameter_schema, first_plan) = match planned {
            PlannedStatement::Query(q) => {
                let params = q.parameter_schema()?;
                let has_parameters = !params.fields().is_empty();
                let params = if has_parameters {
                    schema_bytes(&params)?
                } else {
                    Bytes::new()
                };
                let dataset_schema = schema_bytes(&q.schema())?;
                let first_plan = self
                    .prepare_ahead(caller, *q, settings, has_parameters, span)
                    .await;
                (dataset_schema, params, first_plan)
            }
            // Applied now as well as when executed: ADBC takes a new session token only
            // from a streamed reply, which this (a DoAction) is and its GetFlightInfo is
            // not, and ADBC and JDBC execute what they prepare at once. JDBC takes an empty
            // dataset schema to mean an update.
            PlannedStatement::Set { name, value } => {
                self.apply_setting(caller, &name, &value)?;
                (Bytes::new(), Bytes::new(), FirstPlan::default())
            }
        };
        let handle = PreparedHandle::new(&caller.principal, sql);
        self.sessions.with(caller.session_key(), |s| {
            let local = LocalPrepared {
                first_plan,
                ..LocalPrepared::default()
            };
            s.prepared.insert(handle.id.clone(), local)
        });
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.seal(self.auth.sealer()).into(),
            dataset_schema,
            parameter_schema,
        })
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
        if !self.start_at_prepare || has_parameters || !self.starts_ahead() {
            return FirstPlan::new(Ahead::Planned(Box::new(query), span), settings);
        }
        // Counted before the query reads anything: an ingest that ends after this makes
        // the GetFlightInfo run the query again.
        let ingests = self.ingests.load(Ordering::Acquire);
        let Ok(StartedQuery {
            ticket,
            stream,
            schema,
            manifest,
            watermark_ms,
        }) = self.start(caller, query, span, false).await
        else {
            return FirstPlan::default();
        };
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
            watermark_ms,
        };
        FirstPlan::new(ahead, settings)
    }

    /// DoPut of a prepared statement's parameters: kept here for its next run, and in the
    /// handle given back, which carries them to any replica.
    pub(crate) async fn bind_parameters(
        &self,
        caller: &Caller,
        handle: &[u8],
        data: PeekableFlightDataStream,
    ) -> Result<Vec<u8>> {
        let handle = PreparedHandle::open(self.auth.sealer(), handle, &caller.principal)?;
        let stream = data.map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .map_err(|e| Error::InvalidRequest(format!("reading parameters: {e}")))?;
        let params = parameter_row(&batches)?;
        let binds = self.sessions.with(caller.session_key(), |s| {
            let local = s.prepared.entry(handle.id.clone()).or_default();
            local.binds = local.binds.max(handle.binds) + 1;
            local.params.clone_from(&params);
            local.binds
        });
        let bound = handle.bound(params.as_deref(), binds)?;
        Ok(bound.seal(self.auth.sealer()))
    }

    /// DoGet of a prepared statement without its GetFlightInfo: planned and run now.
    pub(crate) async fn run_prepared(&self, caller: &Caller, handle: &[u8]) -> Result<DoGetStream> {
        let prepared = self.prepared(caller, handle)?;
        let span = query_span(caller);
        let planned = self
            .plan(caller, &prepared.sql)
            .instrument(span.clone())
            .await?;
        let PlannedStatement::Query(query) = planned else {
            return Err(Error::InvalidRequest(
                "the statement returns no rows; there is nothing to fetch".into(),
            ));
        };
        self.audited(caller, &prepared.sql, async {
            let query = bind(*query, prepared.params)?;
            Ok(self.start(caller, query, span, true).await?.stream)
        })
        .await
    }

    /// Starts a query, the one place that does: routes it (the hot/cold split, rollups,
    /// federation: the FlightInfo then says how its result is computed), takes its place
    /// among the running queries and the principal's permit, and hands it to the query
    /// runtime, which plans it physically and reads its sources while this call returns. A
    /// query that was asked for (`asked`, not one started ahead at prepare) may take the
    /// places of queries started ahead that nobody claimed yet.
    async fn start(
        &self,
        caller: &Caller,
        mut query: Query,
        span: Span,
        asked: bool,
    ) -> Result<StartedQuery> {
        route(&mut query, &span)?;
        let manifest_json = query.manifest().to_json();
        // Tickets never redeemed give back their place before this query takes one.
        self.sessions.drop_expired_tickets();
        let ticket = Sessions::new_ticket_id();
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
        let sql = query.sql().to_string();
        let watermark_ms = query.watermark_ms();
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
        for rollup in &manifest.rollups {
            sluice_metrics::ROLLUP_READS
                .with_label_values(&[rollup.as_str()])
                .inc();
        }
        let context = QueryContext {
            principal: Arc::clone(&caller.principal),
            client: caller.client.clone(),
            sql,
            route: manifest.summary(),
            sources: manifest.sources.clone(),
            audit: Arc::clone(&self.audit),
            permit: Some(permit),
            route_label: manifest.route_label(),
            active: Some(active),
            span,
        };
        let batches = ResultStream::new(
            stream,
            Arc::clone(&schema),
            Arc::clone(&self.sessions),
            ticket.clone(),
            context,
        );
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(Arc::clone(&schema))
            .build(batches)
            .map_err(Status::from);
        Ok(StartedQuery {
            ticket,
            stream: Box::pin(flight),
            schema,
            manifest: manifest_json,
            watermark_ms,
        })
    }
}

/// Routes `query` (the hot/cold split, rollups, federation) in its `route` phase, inside
/// the query span: a span's end is its last exit.
fn route(query: &mut Query, span: &Span) -> Result<()> {
    span.in_scope(|| info_span!("route").in_scope(|| query.optimize()))?;
    Ok(())
}

/// The FlightInfo of a query parked under `ticket`.
fn parked_info(
    ticket: Vec<u8>,
    schema: &SchemaRef,
    manifest: String,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    let ticket = TicketStatementQuery {
        statement_handle: ticket.into(),
    };
    Ok(flight_info(schema, ticket.as_any(), descriptor)?.with_app_metadata(manifest))
}
