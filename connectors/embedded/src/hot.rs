use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef, TimestampMillisecondType};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, exec_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use sluice_connector_api::{EventFilter, EventSource, StreamsBatchBuilder};

#[derive(Debug, Clone)]
struct HotEvent {
    ts_ms: i64,
    track_uri: Arc<str>,
    ms_played: i64,
}

/// Recent events per listener, in time order: the embedded stand-in for Redis, with the same
/// access path (one listener and a time range in, one slice out). Clones share the events.
#[derive(Debug, Default, Clone)]
pub struct MemoryHotStore {
    by_user: Arc<RwLock<BTreeMap<Arc<str>, Vec<HotEvent>>>>,
}

impl MemoryHotStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds events (a batch with the `streams` schema). Out-of-order events are placed by
    /// time; an event already held (same listener, time and track) is kept once.
    pub fn append(&self, batch: &RecordBatch) -> Result<usize> {
        let schema = sluice_catalog::streams_schema();
        if batch.schema().fields() != schema.fields() {
            return exec_err!(
                "hot store: batch schema {:?} is not the streams schema {:?}",
                batch.schema(),
                schema
            );
        }
        let users = batch.column(0).as_string::<i32>();
        let tracks = batch.column(1).as_string::<i32>();
        let ts = batch.column(2).as_primitive::<TimestampMillisecondType>();
        let played = batch.column(3).as_primitive::<Int64Type>();
        let mut map = self.by_user.write().expect("hot store lock");
        let mut added = 0;
        for i in 0..batch.num_rows() {
            if users.is_null(i) || tracks.is_null(i) || ts.is_null(i) || played.is_null(i) {
                return exec_err!("hot store: streams columns are not nullable (row {i})");
            }
            let user = users.value(i);
            let events = match map.get_mut(user) {
                Some(e) => e,
                None => map.entry(Arc::from(user)).or_default(),
            };
            let event = HotEvent {
                ts_ms: ts.value(i),
                track_uri: Arc::from(tracks.value(i)),
                ms_played: played.value(i),
            };
            let at = events.partition_point(|e| e.ts_ms < event.ts_ms);
            let duplicate = events[at..]
                .iter()
                .take_while(|e| e.ts_ms == event.ts_ms)
                .any(|e| e.track_uri == event.track_uri);
            if !duplicate {
                // Appends are the common case: the partition point is then the end.
                let at = at
                    + events[at..]
                        .iter()
                        .take_while(|e| e.ts_ms == event.ts_ms)
                        .count();
                events.insert(at, event);
                added += 1;
            }
        }
        Ok(added)
    }

    /// Number of events held.
    pub fn len(&self) -> usize {
        self.by_user
            .read()
            .expect("hot store lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events matching `filter`, as batches with the `streams` schema.
    fn read(&self, filter: &EventFilter, limit: Option<usize>) -> Result<Vec<RecordBatch>> {
        let map = self.by_user.read().expect("hot store lock");
        let mut out = StreamsBatchBuilder::new();
        let slices =
            map.iter()
                .filter(|(user, _)| filter.admits_user(user))
                .map(|(user, events)| {
                    let lo = filter
                        .time
                        .start_ms
                        .map_or(0, |s| events.partition_point(|e| e.ts_ms < s));
                    let hi = filter
                        .time
                        .end_ms
                        .map_or(events.len(), |e| events.partition_point(|x| x.ts_ms < e));
                    (user, &events[lo..hi.max(lo)])
                });
        'outer: for (user, events) in slices {
            for e in events {
                if limit.is_some_and(|l| out.rows() >= l) {
                    break 'outer;
                }
                out.push(user, &e.track_uri, e.ts_ms, e.ms_played)?;
            }
        }
        out.finish()
    }
}

#[async_trait]
impl EventSource for MemoryHotStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn table(&self) -> Arc<dyn TableProvider> {
        Arc::new(MemoryHotTable {
            store: self.clone(),
        })
    }

    async fn append(&self, batch: &RecordBatch) -> Result<u64> {
        Ok(MemoryHotStore::append(self, batch)? as u64)
    }
}

/// The hot store as a DataFusion table: reads only the listeners and time range the pushed
/// filters allow (the filters are re-applied above it).
#[derive(Debug)]
struct MemoryHotTable {
    store: MemoryHotStore,
}

#[async_trait]
impl TableProvider for MemoryHotTable {
    fn schema(&self) -> SchemaRef {
        sluice_catalog::streams_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let filter = EventFilter::from_filters(filters);
        let batches = if filter.is_empty() {
            vec![]
        } else {
            self.store.read(&filter, limit)?
        };
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use sluice_catalog::TIME_ZONE;

    fn batch(rows: &[(&str, &str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            sluice_catalog::streams_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2))
                        .with_timezone(TIME_ZONE),
                ),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|_| 1000))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn out_of_order_and_duplicate_events() {
        let store = MemoryHotStore::new();
        assert_eq!(
            store
                .append(&batch(&[("a", "t1", 30), ("a", "t2", 10)]))
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .append(&batch(&[("a", "t1", 30), ("a", "t3", 20), ("b", "t1", 5)]))
                .unwrap(),
            2
        );
        assert_eq!(store.len(), 4);
        let filter = EventFilter {
            users: Some(["a".to_string()].into()),
            time: sluice_connector_api::TimeRange {
                start_ms: Some(10),
                end_ms: Some(30),
            },
        };
        let out = store.read(&filter, None).unwrap();
        let ts: Vec<i64> = out[0]
            .column(2)
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec();
        assert_eq!(ts, vec![10, 20], "ordered, half-open, one listener");
    }
}
