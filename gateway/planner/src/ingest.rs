//! Ingest: new listening events from an admin, written to the hot store. Only events at or
//! after the watermark `W` may be written there: an older event would fall in the cold
//! branch of `streams` and never be read, so it is refused rather than silently lost.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options, min};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use sluice_catalog::{CATALOG, SCHEMA, STREAMS, streams_schema};
use sluice_connector_api::{EventSource, Watermark};

use crate::error::{Error, Result};

/// Where an ingest asks to write, as the client named it.
#[derive(Debug, Clone, Default)]
pub struct IngestTarget {
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub table: String,
}

/// Writes events into the hot branch of `streams`.
#[derive(Debug, Clone)]
pub(crate) struct EventIngest {
    pub(crate) hot: Arc<dyn EventSource>,
    pub(crate) watermark: Arc<dyn Watermark>,
}

fn refuse(problem: impl Into<String>) -> Error {
    Error::Ingest(problem.into())
}

impl IngestTarget {
    /// Only `streams` (in `sluice.public`) takes events.
    pub(crate) fn check(&self) -> Result<()> {
        let same = |given: &Option<String>, ours: &str| {
            given
                .as_deref()
                .is_none_or(|g| g.is_empty() || g.eq_ignore_ascii_case(ours))
        };
        if !self.table.eq_ignore_ascii_case(STREAMS)
            || !same(&self.catalog, CATALOG)
            || !same(&self.schema, SCHEMA)
        {
            return Err(refuse(format!(
                "table '{}' does not take ingest; only '{STREAMS}' does",
                self.table
            )));
        }
        Ok(())
    }
}

impl EventIngest {
    /// Writes one batch; returns how many events were new.
    pub(crate) async fn write(&self, batch: &RecordBatch) -> Result<u64> {
        let events = conform(batch)?;
        if events.num_rows() == 0 {
            return Ok(0);
        }
        let w = self.watermark.current_ms().await.map_err(Error::Execute)?;
        let ts = events.column(2).as_primitive::<TimestampMillisecondType>();
        if let Some(oldest) = min(ts)
            && oldest < w
        {
            return Err(refuse(format!(
                "an event at {} is older than the watermark {}: the hot store takes events \
                 from the watermark on; load older events into the cold store with `sluice load`",
                format_ms(oldest),
                format_ms(w)
            )));
        }
        self.hot.append(&events).await.map_err(Error::Execute)
    }
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// The batch as the `streams` schema: columns found by name (any case, any order), cast
/// where Arrow can do so losslessly-enough (integers, strings, any timestamp unit or zone);
/// nulls and missing or unknown columns refused.
fn conform(batch: &RecordBatch) -> Result<RecordBatch> {
    let target = streams_schema();
    let given = batch.schema();
    for field in given.fields() {
        if target
            .fields()
            .iter()
            .all(|t| !t.name().eq_ignore_ascii_case(field.name()))
        {
            return Err(refuse(format!(
                "unknown column '{}'; streams has {}",
                field.name(),
                column_list()
            )));
        }
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let Some((i, _)) = given
            .fields()
            .iter()
            .enumerate()
            .find(|(_, f)| f.name().eq_ignore_ascii_case(field.name()))
        else {
            return Err(refuse(format!(
                "column '{}' is missing; streams needs {}",
                field.name(),
                column_list()
            )));
        };
        let column = batch.column(i);
        let wanted = field.data_type();
        // A timestamp without a zone is taken as UTC; any unit becomes milliseconds.
        let cast = cast_with_options(column, wanted, &options).map_err(|e| {
            refuse(format!(
                "column '{}' of type {} cannot be read as {wanted}: {e}",
                field.name(),
                column.data_type()
            ))
        })?;
        if cast.null_count() > 0 {
            return Err(refuse(format!(
                "column '{}' has nulls; every event needs all of {}",
                field.name(),
                column_list()
            )));
        }
        columns.push(cast);
    }
    RecordBatch::try_new(target, columns).map_err(|e| refuse(e.to_string()))
}

fn column_list() -> String {
    streams_schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(fields: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let schema = Schema::new(
            fields
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(
            Arc::new(schema),
            fields.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    #[test]
    fn conform_casts_by_name_and_unit() {
        let b = batch(vec![
            ("ms_played", Arc::new(Int32Array::from(vec![1000]))),
            (
                "TS",
                Arc::new(TimestampMicrosecondArray::from(vec![5_000_000])),
            ),
            ("track_uri", Arc::new(StringArray::from(vec!["t:1"]))),
            ("user_id", Arc::new(StringArray::from(vec!["u1"]))),
        ]);
        let out = conform(&b).unwrap();
        assert_eq!(out.schema(), streams_schema());
        let ts = out.column(2).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 5_000);
    }

    #[test]
    fn conform_refuses_missing_unknown_and_null() {
        let missing = batch(vec![("user_id", Arc::new(StringArray::from(vec!["u1"])))]);
        assert!(
            conform(&missing)
                .unwrap_err()
                .to_string()
                .contains("'track_uri' is missing")
        );
        let unknown = batch(vec![("colour", Arc::new(StringArray::from(vec!["red"])))]);
        assert!(
            conform(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown column 'colour'")
        );
        let nulls = batch(vec![
            ("user_id", Arc::new(StringArray::from(vec![None::<&str>]))),
            ("track_uri", Arc::new(StringArray::from(vec!["t"]))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1]))),
            ("ms_played", Arc::new(Int32Array::from(vec![1]))),
        ]);
        assert!(conform(&nulls).unwrap_err().to_string().contains("nulls"));
    }

    #[test]
    fn target_is_streams_only() {
        let t = |table: &str, schema: Option<&str>| IngestTarget {
            catalog: None,
            schema: schema.map(str::to_string),
            table: table.into(),
        };
        assert!(t("streams", None).check().is_ok());
        assert!(t("STREAMS", Some("public")).check().is_ok());
        assert!(t("tracks", None).check().is_err());
        assert!(t("streams", Some("other")).check().is_err());
    }
}
