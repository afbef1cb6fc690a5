//! The embedded default's rollups ([`sluice_catalog::rollups`]): built from the dataset's
//! events before `W` on first use (those joined with the catalog through the dataset's own
//! catalog files), kept as Parquet next to the dataset (`rollups/w<W>/<table>.parquet`) and
//! read like the cold store.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
use datafusion::catalog::TableProvider;
use sluice_catalog::{
    Dataset, PLAYS_DAILY, RollupDef, RollupGrain, TIME_ZONE, TRACK_FIRST_LAST, TRACKS,
    month_start_ms,
};
use tracing::info;

use crate::cold::parquet_table;
use crate::error::{Error, Result};
use crate::open::{entity_batches, events_since};

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
    let mut by_month: HashMap<(u32, i64, u32), Measures> = HashMap::new();
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
            by_month
                .entry((u, month_start_ms(t), k))
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
            _ if !rollup.joins.is_empty() => {
                catalog_batch(rollup, &by_month, &text, &rank, dataset)?
            }
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
            RollupGrain::Month { .. } => {
                return Err(Error::Rollup {
                    table: rollup.table,
                    message: "a monthly rollup of streams alone is not built here".into(),
                });
            }
        };
        let path = dataset.write_rollup(rollup.table, w_ms, &[batch])?;
        info!(rollup = rollup.table, path = %path.display(), "rollup built");
    }
    Ok(())
}

/// A catalog row's text columns, by name.
type Row = HashMap<String, String>;

/// For each track, the values of `rollup`'s catalog keys, read through inner joins along the
/// catalog's foreign keys from `tracks`: a track whose referenced row is missing has none.
fn catalog_keys_by_track(
    rollup: &RollupDef,
    dataset: &Dataset,
) -> Result<HashMap<String, Vec<String>>> {
    let rows_of = |name: &str| -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for batch in entity_batches(dataset, name)? {
            let schema = batch.schema();
            let columns: Vec<_> = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .filter_map(|(f, c)| c.as_string_opt::<i32>().map(|c| (f.name().clone(), c)))
                .collect();
            for i in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|(n, c)| (n.clone(), c.value(i).to_string()))
                        .collect(),
                );
            }
        }
        Ok(rows)
    };
    let tracks_def = sluice_catalog::table(TRACKS).expect("declared");
    // Each joined table beyond `tracks`, by the key `tracks` references it with.
    let mut joined: HashMap<&str, (&str, HashMap<String, Row>)> = HashMap::new();
    for name in rollup.joins.iter().filter(|n| **n != TRACKS) {
        let fk = tracks_def
            .foreign_keys
            .iter()
            .find(|k| k.references_table == *name)
            .ok_or_else(|| Error::Rollup {
                table: rollup.table,
                message: format!("tracks has no foreign key to {name}"),
            })?;
        let by_key = rows_of(name)?
            .into_iter()
            .filter_map(|r| Some((r.get(fk.references_column)?.clone(), r)))
            .collect();
        joined.insert(name, (fk.column, by_key));
    }
    let mut out = HashMap::new();
    'tracks: for track in rows_of(TRACKS)? {
        let mut values = Vec::with_capacity(rollup.catalog_keys.len());
        for key in rollup.catalog_keys {
            let row = if key.table == TRACKS {
                &track
            } else {
                let (fk_column, by_key) = &joined[key.table];
                match track.get(*fk_column).and_then(|v| by_key.get(v)) {
                    Some(row) => row,
                    None => continue 'tracks,
                }
            };
            values.push(row.get(key.column).cloned().unwrap_or_default());
        }
        if let Some(uri) = track.get("track_uri") {
            out.insert(uri.clone(), values);
        }
    }
    Ok(out)
}

/// A monthly rollup by catalog keys, from the events grouped by listener, month and track.
fn catalog_batch(
    rollup: &RollupDef,
    by_month: &HashMap<(u32, i64, u32), Measures>,
    text: &[String],
    rank: &[u32],
    dataset: &Dataset,
) -> Result<RecordBatch> {
    let keys = catalog_keys_by_track(rollup, dataset)?;
    let mut groups: HashMap<(u32, i64, &[String]), Measures> = HashMap::new();
    for ((u, month, track), m) in by_month {
        let Some(values) = keys.get(&text[*track as usize]) else {
            continue; // not in the catalog: dropped by the inner join
        };
        groups
            .entry((*u, *month, values.as_slice()))
            .and_modify(|g| {
                g.plays += m.plays;
                g.ms_played += m.ms_played;
            })
            .or_insert(*m);
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_unstable_by(|((u1, m1, k1), _), ((u2, m2, k2), _)| {
        (rank[*u1 as usize], m1, k1).cmp(&(rank[*u2 as usize], m2, k2))
    });
    let schema = sluice_catalog::table(rollup.table)
        .expect("declared")
        .schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let column = match rollup.grain {
            _ if name == "user_id" => {
                strings(rows.iter().map(|((u, _, _), _)| text[*u as usize].as_str()))
            }
            RollupGrain::Month { column } if name == column => {
                times(rows.iter().map(|((_, m, _), _)| *m))
            }
            _ if name == rollup.plays => ints(rows.iter().map(|(_, m)| m.plays)),
            _ if Some(name) == rollup.ms_played => ints(rows.iter().map(|(_, m)| m.ms_played)),
            _ => {
                let Some(at) = rollup.catalog_keys.iter().position(|k| k.column == name) else {
                    return Err(Error::Rollup {
                        table: rollup.table,
                        message: format!("{name} is not a key or measure built here"),
                    });
                };
                strings(rows.iter().map(|((_, _, k), _)| k[at].as_str()))
            }
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
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
