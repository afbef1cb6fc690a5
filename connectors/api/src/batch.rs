use std::sync::Arc;

use datafusion::arrow::array::{
    Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::error::Result;
use sluice_catalog::TIME_ZONE;

/// Rows of `streams` in, batches of [`StreamsBatchBuilder::BATCH_ROWS`] rows with the
/// logical schema out: how every hot store turns what it holds into Arrow.
#[derive(Debug)]
pub struct StreamsBatchBuilder {
    users: StringBuilder,
    tracks: StringBuilder,
    ts: TimestampMillisecondBuilder,
    played: Int64Builder,
    len: usize,
    done: Vec<RecordBatch>,
}

impl Default for StreamsBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBatchBuilder {
    /// Rows per batch.
    pub const BATCH_ROWS: usize = 8 * 1024;

    pub fn new() -> Self {
        Self {
            users: StringBuilder::new(),
            tracks: StringBuilder::new(),
            ts: TimestampMillisecondBuilder::new().with_timezone(TIME_ZONE),
            played: Int64Builder::new(),
            len: 0,
            done: Vec::new(),
        }
    }

    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.done.iter().map(RecordBatch::num_rows).sum::<usize>() + self.len
    }

    pub fn push(&mut self, user: &str, track: &str, ts_ms: i64, ms_played: i64) -> Result<()> {
        self.users.append_value(user);
        self.tracks.append_value(track);
        self.ts.append_value(ts_ms);
        self.played.append_value(ms_played);
        self.len += 1;
        if self.len == Self::BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let batch = RecordBatch::try_new(
            sluice_catalog::streams_schema(),
            vec![
                Arc::new(self.users.finish()),
                Arc::new(self.tracks.finish()),
                Arc::new(self.ts.finish()),
                Arc::new(self.played.finish()),
            ],
        )?;
        self.done.push(batch);
        self.len = 0;
        Ok(())
    }

    /// The batches, the last one possibly short.
    pub fn finish(mut self) -> Result<Vec<RecordBatch>> {
        if self.len > 0 {
            self.flush()?;
        }
        Ok(self.done)
    }
}
