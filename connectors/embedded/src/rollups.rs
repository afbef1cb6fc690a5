//! The embedded default's rollups ([`sluice_catalog::rollups`]): built from the dataset's
//! events before `W` on first use, kept as Parquet next to the dataset
//! (`rollups/w<W>/<table>.parquet`) and read like the cold store.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
use datafusion::catalog::TableProvider;
use sluice_catalog::{Dataset, PLAYS_DAILY, RollupGrain, TIME_ZONE, TRACK_FIRST_LAST};
use tracing::info;

use crate::cold::parquet_table;
use crate::error::Result;
use crate::open::events_since;

const DAY_MS: i64 = 86_400_000;

/// The measures of one group: plays, ms played, first and last `ts`.
#[derive(Debug, Clone, Copy)]
struct Measures {
    plays: i64,
    ms_played: i64,
    first: i64,
    last: i64,
}

impl Measures {
    fn new(ts: i64, ms: i64) -> Self {
        Self {
            plays: 1,
            ms_played: ms,
            first: ts,
            last: ts,
        }
    }

    fn add(&mut self, ts: i64, ms: i64) {
        self.plays += 1;
        self.ms_played += ms;
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
    }
}

/// The rollup tables of `dataset` at `w_ms`, by name, built if missing.
pub fn rollup_tables(
    dataset: &Dataset,
    w_ms: i64,
) -> Result<Vec<(String, Arc<dyn TableProvider>)>> {
    let missing = sluice_catalog::rollups()
        .iter()
        .any(|r| !dataset.rollup_file(r.table, w_ms).exists());
    if missing {
        build(dataset, w_ms)?;
    }
    sluice_catalog::rollups()
        .iter()
        .map(|r| {
            let schema = sluice_catalog::table(r.table).expect("declared").schema();
            let table = parquet_table(&dataset.rollup_file(r.table, w_ms), schema)?;
            Ok((r.table.to_string(), table))
        })
        .collect()
}

/// Groups the events before `w_ms` by every rollup's keys and writes the files.
fn build(dataset: &Dataset, w_ms: i64) -> Result<()> {
    let mut names: HashMap<String, u32> = HashMap::new();
    let mut by_day: HashMap<(u32, i64, u32), Measures> = HashMap::new();
    let mut by_track: HashMap<(u32, u32), Measures> = HashMap::new();
    let intern = |names: &mut HashMap<String, u32>, s: &str| -> u32 {
        if let Some(&id) = names.get(s) {
            return id;
        }
        let id = names.len() as u32;
        names.insert(s.to_string(), id);
        id
    };
    events_since(dataset, i64::MIN, |batch| {
        let users = batch.column(0).as_string::<i32>();
        let tracks = batch.column(1).as_string::<i32>();
        let ts = batch.column(2).as_primitive::<TimestampMillisecondType>();
        let ms = batch.column(3).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let t = ts.value(i);
            if t >= w_ms {
                continue;
            }
            let (u, k, m) = (
                intern(&mut names, users.value(i)),
                intern(&mut names, tracks.value(i)),
                ms.value(i),
            );
            by_day
                .entry((u, t.div_euclid(DAY_MS) * DAY_MS, k))
                .and_modify(|g| g.add(t, m))
                .or_insert(Measures::new(t, m));
            by_track
                .entry((u, k))
                .and_modify(|g| g.add(t, m))
                .or_insert(Measures::new(t, m));
        }
        Ok(())
    })?;
    let mut text = vec![String::new(); names.len()];
    for (s, id) in names {
        text[id as usize] = s;
    }
    // Rows in (user_id, day, track_uri) order, so row-group statistics skip other listeners.
    let mut order: Vec<u32> = (0..text.len() as u32).collect();
    order.sort_by(|a, b| text[*a as usize].cmp(&text[*b as usize]));
    let mut rank = vec![0u32; text.len()];
    for (r, id) in order.into_iter().enumerate() {
        rank[id as usize] = r as u32;
    }
    for rollup in sluice_catalog::rollups() {
        let batch = match rollup.grain {
            RollupGrain::Day { .. } => {
                let mut rows: Vec<_> = by_day.iter().collect();
                rows.sort_unstable_by_key(|((u, d, k), _)| {
                    (rank[*u as usize], *d, rank[*k as usize])
                });
                day_batch(&rows, &text)?
            }
            RollupGrain::AllTime => {
                let mut rows: Vec<_> = by_track.iter().collect();
                rows.sort_unstable_by_key(|((u, k), _)| (rank[*u as usize], rank[*k as usize]));
                track_batch(&rows, &text)?
            }
        };
        let path = dataset.write_rollup(rollup.table, w_ms, &[batch])?;
        info!(rollup = rollup.table, path = %path.display(), "rollup built");
    }
    Ok(())
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn ints(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

fn times(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone(TIME_ZONE))
}

fn day_batch(rows: &[(&(u32, i64, u32), &Measures)], text: &[String]) -> Result<RecordBatch> {
    let schema = sluice_catalog::table(PLAYS_DAILY)
        .expect("declared")
        .schema();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            strings(rows.iter().map(|((u, _, _), _)| text[*u as usize].as_str())),
            times(rows.iter().map(|((_, d, _), _)| *d)),
            strings(rows.iter().map(|((_, _, k), _)| text[*k as usize].as_str())),
            ints(rows.iter().map(|(_, m)| m.plays)),
            ints(rows.iter().map(|(_, m)| m.ms_played)),
        ],
    )?)
}

fn track_batch(rows: &[(&(u32, u32), &Measures)], text: &[String]) -> Result<RecordBatch> {
    let schema = sluice_catalog::table(TRACK_FIRST_LAST)
        .expect("declared")
        .schema();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            strings(rows.iter().map(|((u, _), _)| text[*u as usize].as_str())),
            strings(rows.iter().map(|((_, k), _)| text[*k as usize].as_str())),
            times(rows.iter().map(|(_, m)| m.first)),
            times(rows.iter().map(|(_, m)| m.last)),
            ints(rows.iter().map(|(_, m)| m.plays)),
        ],
    )?)
}
