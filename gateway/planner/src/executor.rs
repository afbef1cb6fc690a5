//! Where queries run: DataFusion's operators are CPU-bound and may hold a thread for seconds
//! between two yields (a large join, a sort). Run on the runtime that serves gRPC, they would
//! starve it: no login, no cancel, no timeout until they yield. So each query's plan runs on
//! a runtime of its own ([`QueryExecutor`]) and hands its batches over a small channel.
//! When the reader goes away, the task is aborted and the run's [`QueryStop`] set: the
//! abort takes at the next yield, the stop at the next check inside a join.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::query_stop::QueryStop;

/// A handle on the runtime that runs query plans (the caller owns the runtime).
#[derive(Debug, Clone)]
pub struct QueryExecutor {
    handle: Handle,
}

/// Stops the task that drives a stream, and its run, when the stream's reader goes away.
struct StopOnDrop(AbortHandle, QueryStop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
        self.1.stop();
    }
}

impl QueryExecutor {
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }

    /// Starts a plan (`start`: plans it physically and returns its stream of `schema`,
    /// watched by `stop`) on the query runtime and drives it there; the stream returned reads its batches, the
    /// first of them an error if it could not start. One hop between the runtimes per
    /// query; two batches in flight keep both sides busy without buffering a result.
    pub(crate) fn drive(
        &self,
        schema: SchemaRef,
        start: impl Future<Output = Result<SendableRecordBatchStream, DataFusionError>> + Send + 'static,
        stop: QueryStop,
    ) -> SendableRecordBatchStream {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let pump = self.handle.spawn(async move {
            let mut stream = match start.await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                if tx.send(item).await.is_err() {
                    break; // the reader went away
                }
            }
        });
        let guard = StopOnDrop(pump.abort_handle(), stop);
        let batches = futures::stream::poll_fn(move |cx| {
            let _owns = &guard;
            rx.poll_recv(cx)
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}
