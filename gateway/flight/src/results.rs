//! The result stream of one query, from DataFusion to the Flight encoder: batches pass
//! through as they come (never collected), relabelled to the schema announced in
//! FlightInfo, stopped by CancelFlightInfo, counted (metrics by outcome) and logged at the end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_flight::error::FlightError;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::Stream;
use tokio::sync::oneshot;
use tonic::Status;
use tracing::info;

use crate::error::Error;
use crate::session::Sessions;

pub(crate) struct ResultStream {
    inner: SendableRecordBatchStream,
    schema: SchemaRef,
    cancel: oneshot::Receiver<()>,
    sessions: Arc<Sessions>,
    ticket: Vec<u8>,
    principal: Arc<str>,
    started: Instant,
    rows: u64,
    done: bool,
}

impl ResultStream {
    pub(crate) fn new(
        inner: SendableRecordBatchStream,
        schema: SchemaRef,
        sessions: Arc<Sessions>,
        ticket: Vec<u8>,
        principal: Arc<str>,
    ) -> Self {
        let cancel = sessions.start(&ticket);
        Self {
            inner,
            schema,
            cancel,
            sessions,
            ticket,
            principal,
            started: Instant::now(),
            rows: 0,
            done: false,
        }
    }

    fn end(&mut self, outcome: &'static str) {
        if !self.done {
            self.done = true;
            self.sessions.finish(&self.ticket);
            let elapsed = self.started.elapsed();
            sluice_metrics::QUERIES.with_label_values(&[outcome]).inc();
            sluice_metrics::QUERY_SECONDS
                .with_label_values(&[outcome])
                .observe(elapsed.as_secs_f64());
            info!(
                principal = %self.principal,
                rows = self.rows,
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                outcome,
                "query done"
            );
        }
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
        .map_err(|e| FlightError::Tonic(Box::new(Status::from(Error::Encode(e.to_string())))))
    }
}

impl Stream for ResultStream {
    type Item = Result<RecordBatch, FlightError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Ok(())) = Pin::new(&mut self.cancel).poll(cx) {
            self.end("cancelled");
            return Poll::Ready(Some(Err(FlightError::Tonic(Box::new(Status::cancelled(
                "query cancelled by CancelFlightInfo",
            ))))));
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows() as u64;
                Poll::Ready(Some(self.relabel(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.end("failed");
                let status = Status::from(Error::Query(sluice_planner::Error::Execute(e)));
                Poll::Ready(Some(Err(FlightError::Tonic(Box::new(status)))))
            }
            Poll::Ready(None) => {
                self.end("ok");
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ResultStream {
    fn drop(&mut self) {
        // A client that goes away drops the stream, and with it the DataFusion plan.
        self.end("client_gone");
    }
}
