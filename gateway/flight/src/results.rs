//! The result stream of one query, from DataFusion to the Flight encoder: batches pass
//! through as they come (never collected), relabelled to the schema announced in
//! FlightInfo, held to the principal's limits (time, rows; the concurrency permit is held
//! until the end), stopped by CancelFlightInfo, counted (metrics by outcome) and audited at
//! the end. Whatever ends it frees the plan at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_flight::error::FlightError;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::EmptyRecordBatchStream;
use futures::Stream;
use sluice_auth::Principal;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Sleep;
use tonic::Status;
use tracing::{Span, info_span};

use crate::admission::ActiveQuery;
use crate::audit::{AuditLog, AuditRecord};
use crate::error::Error;
use crate::session::Sessions;

/// What a running query is accountable for: who runs it, what it is, how it was routed.
#[derive(Debug)]
pub(crate) struct QueryContext {
    pub(crate) principal: Arc<Principal>,
    /// The client's `user-agent`, for the audit record.
    pub(crate) client: Option<String>,
    pub(crate) sql: String,
    pub(crate) route: String,
    pub(crate) sources: Vec<String>,
    pub(crate) audit: Arc<AuditLog>,
    /// The principal's concurrency slot, freed when the stream ends.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    /// The route as a metric label (`hot`, `cold+rollup`, ...).
    pub(crate) route_label: &'static str,
    /// The query's place among the process's running queries, freed when the stream ends.
    pub(crate) active: Option<ActiveQuery>,
    /// The query's span; it ends with the stream.
    pub(crate) span: Span,
}

pub(crate) struct ResultStream {
    inner: SendableRecordBatchStream,
    schema: SchemaRef,
    /// Fires with the outcome to end with: cancelled, or an unclaimed start discarded.
    cancel: oneshot::Receiver<&'static str>,
    deadline: Option<Pin<Box<Sleep>>>,
    sessions: Arc<Sessions>,
    ticket: Vec<u8>,
    context: QueryContext,
    started: Instant,
    rows: u64,
    done: bool,
    /// The `stream` phase of the query's span: from the first poll to the end.
    streaming: Option<Span>,
}

fn flight_error(status: Status) -> FlightError {
    FlightError::Tonic(Box::new(status))
}

impl ResultStream {
    pub(crate) fn new(
        inner: SendableRecordBatchStream,
        schema: SchemaRef,
        sessions: Arc<Sessions>,
        ticket: Vec<u8>,
        context: QueryContext,
    ) -> Self {
        let cancel = sessions.start(&ticket);
        let deadline = context
            .principal
            .limits()
            .query_timeout
            .map(|t| Box::pin(tokio::time::sleep(t)));
        Self {
            inner,
            schema,
            cancel,
            deadline,
            sessions,
            ticket,
            context,
            started: Instant::now(),
            rows: 0,
            done: false,
            streaming: None,
        }
    }

    /// Ends the query once: frees its plan and its concurrency slot, counts and audits it.
    fn end(&mut self, outcome: &'static str, error: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        self.inner = Box::pin(EmptyRecordBatchStream::new(Arc::clone(&self.schema)));
        self.context.permit = None;
        self.context.active = None;
        self.sessions.finish(&self.ticket);
        let elapsed = self.started.elapsed();
        let labels = [outcome, self.context.route_label];
        sluice_metrics::QUERIES.with_label_values(&labels).inc();
        sluice_metrics::QUERY_SECONDS
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
        self.streaming = None;
        let c = &self.context;
        c.span.record("outcome", outcome);
        c.span.record("route", c.route_label);
        // As i64: trace exporters carry u64 fields as strings.
        c.span
            .record("rows", i64::try_from(self.rows).unwrap_or(i64::MAX));
        let mut record = AuditRecord::new(&c.principal, &c.sql, outcome).elapsed(elapsed);
        record.route = &c.route;
        record.sources = &c.sources;
        record.rows = self.rows;
        record.error = error;
        record.client = c.client.as_deref();
        c.audit.record(&record);
    }

    /// Ends the query with `status` as its last item.
    fn fail(
        &mut self,
        outcome: &'static str,
        status: Status,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        self.end(outcome, Some(status.message()));
        Poll::Ready(Some(Err(flight_error(status))))
    }

    fn relabel(&self, batch: RecordBatch) -> Result<RecordBatch, FlightError> {
        if batch.schema_ref() == &self.schema {
            return Ok(batch);
        }
        // Same columns and types; nullability or metadata may differ from the logical plan.
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            batch.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| flight_error(Status::from(Error::Encode(e.to_string()))))
    }
}

impl Stream for ResultStream {
    type Item = Result<RecordBatch, FlightError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Inside the query span, which ends at its last exit: the end of the stream.
        let query_span = self.context.span.clone();
        let _entered = query_span.enter();
        if self.streaming.is_none() {
            self.streaming = Some(info_span!(parent: &self.context.span, "stream"));
        }
        if let Poll::Ready(Ok(outcome)) = Pin::new(&mut self.cancel).poll(cx) {
            return self.fail(
                outcome,
                Status::cancelled("query cancelled by CancelFlightInfo"),
            );
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            let limits = *self.context.principal.limits();
            let secs = limits.query_timeout.unwrap_or_default().as_secs();
            let status = Status::from(Error::Timeout(format!(
                "the query ran longer than {secs} s, the limit of {} (query_timeout_secs); \
                 narrow it or ask for a higher limit",
                self.context.principal.name()
            )));
            return self.fail("timeout", status);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows() as u64;
                if let Some(max) = self.context.principal.limits().max_rows
                    && self.rows > max
                {
                    let status = Status::from(Error::Limit(format!(
                        "the result has more than {max} rows, the limit of {} (max_rows); \
                         add LIMIT, aggregate, or ask for a higher limit",
                        self.context.principal.name()
                    )));
                    self.rows -= batch.num_rows() as u64;
                    return self.fail("too_many_rows", status);
                }
                Poll::Ready(Some(self.relabel(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                use sluice_planner::ErrorKind;
                let error = sluice_planner::Error::Execute(e);
                let kind = error.kind();
                // The memory pools' messages name the limit that was reached.
                let status = match kind {
                    ErrorKind::ResourceExhausted => {
                        Status::from(Error::Limit(format!("out of memory: {error}")))
                    }
                    _ => Status::from(Error::Query(error)),
                };
                // Physical planning runs in the stream too: a statement it refuses is
                // the caller's to fix, as when planning refuses it.
                let outcome = match kind {
                    ErrorKind::InvalidRequest
                    | ErrorKind::Unsupported
                    | ErrorKind::PermissionDenied => "refused",
                    _ => "failed",
                };
                self.fail(outcome, status)
            }
            Poll::Ready(None) => {
                self.end("ok", None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ResultStream {
    fn drop(&mut self) {
        // A client that goes away drops the stream, and with it the DataFusion plan; so
        // does CancelFlightInfo for a query whose DoGet has not come yet, and the discard
        // of a query started at prepare that no GetFlightInfo claimed (`unused`).
        let outcome = self.cancel.try_recv().unwrap_or("client_gone");
        self.end(outcome, None);
    }
}
