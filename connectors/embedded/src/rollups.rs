//! The embedded default's rollups: each declared [`RollupDef`] built from the dataset's events
//! before `W` on first use (those joined with the catalog through the dataset's own catalog
//! files), kept as Parquet next to the dataset (`rollups/w<W>/<table>.parquet`) and read like
//! the cold store. Nothing here names a rollup: the groupings come from the declarations.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
use datafusion::catalog::TableProvider;
use sluice_catalog::{
    Dataset, RollupDef, RollupGrain, RollupMeasure, STREAMS, TIME_ZONE, TRACKS, month_start_ms,
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

    fn merge(&mut self, other: &Self) {
        self.plays += other.plays;
        self.ms_played += other.ms_played;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }

    fn get(&self, measure: RollupMeasure) -> i64 {
        match measure {
            RollupMeasure::FirstTs => self.first,
            RollupMeasure::LastTs => self.last,
            RollupMeasure::Plays => self.plays,
            RollupMeasure::MsPlayed => self.ms_played,
        }
    }
}

/// The tables of `rollups` over `dataset` at `w_ms`, built if missing.
pub fn rollup_tables(
    dataset: &Dataset,
    w_ms: i64,
    rollups: &'static [RollupDef],
) -> Result<Vec<(&'static RollupDef, Arc<dyn TableProvider>)>> {
    for rollup in rollups {
        rollup.check()?;
    }
    let missing = rollups
        .iter()
        .any(|r| !dataset.rollup_file(r.table, w_ms).exists());
    if missing {
        build(dataset, w_ms, rollups)?;
    }
    rollups
        .iter()
        .map(|r| {
            let table = parquet_table(&dataset.rollup_file(r.table, w_ms), r.table_def().schema())?;
            Ok((r, table))
        })
        .collect()
}

/// Text interned as numbers, so groups are keyed by small copies.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
}

impl Names {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(s.to_string(), id);
        id
    }

    /// Each id's text, and each id's rank in the text's order (so rows sort by text).
    fn finish(self) -> (Vec<String>, Vec<u32>) {
        let mut text = vec![String::new(); self.ids.len()];
        for (s, id) in self.ids {
            text[id as usize] = s;
        }
        let mut order: Vec<u32> = (0..text.len() as u32).collect();
        order.sort_by(|a, b| text[*a as usize].cmp(&text[*b as usize]));
        let mut rank = vec![0u32; text.len()];
        for (r, id) in order.into_iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        (text, rank)
    }
}

/// Events grouped by listener, UTC day and track: every declared rollup is a regrouping of
/// these (its period is a day, a month or all time, its keys are the track's or follow
/// from it through the catalog).
type ByDay = HashMap<(u32, i64, u32), Measures>;

/// Groups the events before `w_ms` by each rollup's keys and writes the files.
fn build(dataset: &Dataset, w_ms: i64, rollups: &[RollupDef]) -> Result<()> {
    let mut names = Names::default();
    let mut by_day = ByDay::new();
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
            let key = (
                names.id(users.value(i)),
                t.div_euclid(DAY_MS) * DAY_MS,
                names.id(tracks.value(i)),
            );
            let m = Measures::new(t, ms.value(i));
            by_day.entry(key).and_modify(|g| g.merge(&m)).or_insert(m);
        }
        Ok(())
    })?;
    // Each rollup's key values per track, interned like the events' text.
    let mut keys_of = Vec::with_capacity(rollups.len());
    for rollup in rollups {
        keys_of.push(keys_by_track(rollup, dataset, &mut names)?);
    }
    let (text, rank) = names.finish();
    for (rollup, keys) in rollups.iter().zip(keys_of) {
        let batch = regroup(rollup, &by_day, &keys, &text, &rank)?;
        let path = dataset.write_rollup(rollup.table, w_ms, batch.schema(), &[batch])?;
        info!(rollup = rollup.table, path = %path.display(), "rollup built");
    }
    Ok(())
}

/// A catalog row's text columns, by name.
type Row = HashMap<String, String>;

fn rows_of(dataset: &Dataset, name: &str) -> Result<Vec<Row>> {
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
}

/// How a rollup keys a track's events: the values of its key columns, in
/// [`RollupDef::key_columns`] order, by track (interned). Without joins every track has them
/// (they are the track's own, or none); with joins only tracks that meet a row of every
/// joined table along the catalog's foreign keys from `tracks`, as in an inner join.
enum TrackKeys {
    Own { track_uri: bool },
    Joined(HashMap<u32, Vec<u32>>),
}

fn keys_by_track(rollup: &RollupDef, dataset: &Dataset, names: &mut Names) -> Result<TrackKeys> {
    if rollup.joins.is_empty() {
        return Ok(TrackKeys::Own {
            track_uri: rollup.keys.contains(&"track_uri"),
        });
    }
    let tracks_def = sluice_catalog::table(TRACKS).expect("declared");
    // Each joined table beyond `tracks`, by the column of `tracks` referencing it.
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
        let by_key = rows_of(dataset, name)?
            .into_iter()
            .filter_map(|r| Some((r.get(fk.references_column)?.clone(), r)))
            .collect();
        joined.insert(name, (fk.column, by_key));
    }
    let mut out = HashMap::new();
    'tracks: for track in rows_of(dataset, TRACKS)? {
        let Some(uri) = track.get("track_uri") else {
            continue;
        };
        let mut rows: HashMap<&str, &Row> = HashMap::from([(TRACKS, &track)]);
        for (name, (fk_column, by_key)) in &joined {
            match track.get(*fk_column).and_then(|v| by_key.get(v)) {
                Some(row) => rows.insert(name, row),
                None => continue 'tracks,
            };
        }
        let values = rollup
            .key_columns()
            .map(|(from, column)| {
                let from = if from == STREAMS { TRACKS } else { from };
                names.id(rows[from].get(column).map_or("", String::as_str))
            })
            .collect();
        out.insert(names.id(uri), values);
    }
    Ok(TrackKeys::Joined(out))
}

/// One rollup's rows: the daily groups regrouped by its period and keys, in (listener,
/// period, keys) order so row-group statistics skip other listeners.
fn regroup(
    rollup: &RollupDef,
    by_day: &ByDay,
    keys: &TrackKeys,
    text: &[String],
    rank: &[u32],
) -> Result<RecordBatch> {
    let period = |day: i64| match rollup.grain {
        RollupGrain::Day { .. } => day,
        RollupGrain::Month { .. } => month_start_ms(day),
        RollupGrain::AllTime => 0,
    };
    // Keyed by slices borrowed from `by_day` and `keys`: nothing allocated per group.
    let mut groups: HashMap<(u32, i64, &[u32]), Measures> = HashMap::new();
    for ((user, day, track), m) in by_day {
        let values: &[u32] = match keys {
            TrackKeys::Own { track_uri: true } => std::slice::from_ref(track),
            TrackKeys::Own { track_uri: false } => &[],
            TrackKeys::Joined(by_track) => match by_track.get(track) {
                Some(values) => values,
                None => continue, // not in the catalog: dropped by the inner join
            },
        };
        let key = (*user, period(*day), values);
        groups.entry(key).and_modify(|g| g.merge(m)).or_insert(*m);
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    let ranked = |v: &[u32]| v.iter().map(|id| rank[*id as usize]).collect::<Vec<_>>();
    rows.sort_by_cached_key(|((u, p, k), _)| (rank[*u as usize], *p, ranked(k)));

    let schema = rollup.table_def().schema();
    let key_columns: Vec<&str> = rollup.key_columns().map(|(_, c)| c).collect();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let column = if name == "user_id" {
            strings(rows.iter().map(|((u, _, _), _)| text[*u as usize].as_str()))
        } else if rollup.grain.column() == Some(name) {
            times(rows.iter().map(|((_, p, _), _)| *p))
        } else if let Some(at) = key_columns.iter().position(|c| *c == name) {
            strings(
                rows.iter()
                    .map(|((_, _, k), _)| text[k[at] as usize].as_str()),
            )
        } else if let Some((measure, _)) = rollup.measures().find(|(_, c)| *c == name) {
            let values = rows.iter().map(|(_, m)| m.get(measure));
            match measure {
                RollupMeasure::FirstTs | RollupMeasure::LastTs => times(values),
                RollupMeasure::Plays | RollupMeasure::MsPlayed => ints(values),
            }
        } else {
            return Err(Error::Rollup {
                table: rollup.table,
                message: format!("{name} is not a key or measure built here"),
            });
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
