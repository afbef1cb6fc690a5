//! EXPLAIN's answer in Sluice: DataFusion's rows, then one more, `sluice_route`, with the
//! route in words ([`crate::Manifest::describe`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

/// An EXPLAIN result with one more row, `sluice_route`, after DataFusion's.
pub(crate) fn with_route_row(
    stream: SendableRecordBatchStream,
    route: &str,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    let schema = stream.schema();
    let columns = schema
        .fields()
        .iter()
        .zip([SLUICE_ROUTE, route])
        .map(|(f, v)| {
            let text: ArrayRef = Arc::new(StringArray::from(vec![v]));
            cast(&text, f.data_type())
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let row = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.chain(futures::stream::once(async move { Ok(row) })),
    )))
}

/// The `plan_type` of the route row EXPLAIN gains.
const SLUICE_ROUTE: &str = "sluice_route";
