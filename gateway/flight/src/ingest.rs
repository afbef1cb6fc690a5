//! Bulk ingest (DoPut of `CommandStatementIngest`): an admin's events appended to `streams`,
//! batch by batch as they arrive.

use std::sync::atomic::Ordering;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption};
use futures::TryStreamExt;
use sluice_planner::IngestTarget;
use tracing::{Instrument, info, info_span};

use crate::error::{Error, Result};
use crate::service::{Caller, SluiceSqlService};

/// Ingest appends to `streams`, which always exists: the ADBC modes `append` and
/// `create_append` are accepted, the others refused with what to do instead.
fn check_ingest_options(cmd: &CommandStatementIngest) -> Result<()> {
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

impl SluiceSqlService {
    /// Writes the events of `data` into the hot store; returns how many were new.
    pub(crate) async fn ingest(
        &self,
        caller: &Caller,
        cmd: CommandStatementIngest,
        data: PeekableFlightDataStream,
    ) -> Result<i64> {
        let target = IngestTarget {
            catalog: cmd.catalog.clone(),
            schema: cmd.schema.clone(),
            table: cmd.table.clone(),
        };
        self.engine.check_ingest(&caller.principal, &target)?;
        check_ingest_options(&cmd)?;
        let span = info_span!("ingest", principal = %caller.principal.name(), table = %cmd.table);
        async move {
            let stream = data.map_err(FlightError::from);
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
                added += ingested?;
            }
            info!(rows, added, "ingested");
            Ok(added as i64)
        }
        .instrument(span)
        .await
    }
}
