//! Results to record batches of the plan's schema, from either format: `Native` blocks
//! (decoded by [`crate::native`]) and `ArrowStream` batches ([`crate::arrow_stream`]).
//! Columns are matched with the schema the plan expects by name ([`match_columns`]), by
//! position only among those whose names say nothing (an expression ClickHouse named after
//! its own text); each is cast where the plan's type differs (a `UInt64` sum read as
//! `Int64`, a time kept in milliseconds read as `Timestamp(ms)`). A type with no mapping is
//! an error naming the column, never a guess.

use std::sync::Arc;

use clickhouse::native::DataTypeNode;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};

use crate::error::{Error, Result};
use crate::native::{Block, datetime64_unit};

/// Decodes blocks of one result for one expected schema.
#[derive(Debug)]
pub(crate) struct BlockDecoder {
    schema: SchemaRef,
    endpoint: Arc<str>,
}

impl BlockDecoder {
    pub(crate) fn new(schema: SchemaRef, endpoint: Arc<str>) -> Self {
        Self { schema, endpoint }
    }

    /// A `Native` block, its columns decoded by [`crate::native`].
    pub(crate) fn decode(&self, block: Block) -> Result<RecordBatch> {
        let rows = block.rows;
        let columns = block
            .columns
            .into_iter()
            .map(|c| Received {
                type_name: c.data_type.to_string(),
                name: c.name,
                array: c.array,
            })
            .collect();
        self.conform_columns(columns, rows)
    }

    /// An `ArrowStream` batch, as ClickHouse sent it. `DateTime` arrives as `UInt32`
    /// seconds: where the plan expects a timestamp such a column is read as seconds (Sluice
    /// keeps its own times as `Int64` milliseconds, which never fit 32 bits).
    pub(crate) fn decode_arrow(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let schema = batch.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, array)| Received {
                name: field.name().clone(),
                type_name: format!("Arrow {}", field.data_type()),
                array: Arc::clone(array),
            })
            .collect();
        self.conform_columns(columns, rows)
    }

    fn conform_columns(&self, columns: Vec<Received>, rows: usize) -> Result<RecordBatch> {
        // Rows without columns (a count over the gateway's side) arrive as `SELECT 1`.
        let columns = if self.schema.fields().is_empty() {
            &columns[..0]
        } else {
            &columns[..]
        };
        if columns.len() != self.schema.fields().len() {
            return Err(Error::Unexpected {
                endpoint: self.endpoint.to_string(),
                message: format!(
                    "the result has {} columns, the plan expects {}",
                    columns.len(),
                    self.schema.fields().len()
                ),
            });
        }
        let order = match_columns(
            self.schema.fields().iter().map(|f| f.name().as_str()),
            columns.iter().map(|c| c.name.as_str()),
        );
        let arrays = order
            .into_iter()
            .zip(self.schema.fields())
            .map(|(i, field)| self.column(&columns[i], field.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| Error::Unexpected {
            endpoint: self.endpoint.to_string(),
            message: e.to_string(),
        })
    }

    fn column(&self, column: &Received, field: &Field) -> Result<ArrayRef> {
        conform(Arc::clone(&column.array), field.data_type()).map_err(|message| Error::Decode {
            endpoint: self.endpoint.to_string(),
            column: field.name().clone(),
            message: format!(
                "{} ({}) cannot be read as {}: {message}",
                column.name,
                column.type_name,
                field.data_type()
            ),
        })
    }
}

/// One column of a result as it arrived: its name, the type the server gave it (for
/// messages), and its values.
struct Received {
    name: String,
    type_name: String,
    array: ArrayRef,
}

/// For each field the plan expects, the index of the result column that holds it: the one
/// of the same name where exactly one field and one column have it, else the next column
/// not taken by name, in order. The names Sluice's statements give their columns are the
/// plan's (`count(1) AS "count(Int64(1))"`, a table's own columns), so a statement whose
/// columns come in another order than the plan's is still read right, never read shifted.
fn match_columns<'a>(
    fields: impl Iterator<Item = &'a str>,
    columns: impl Iterator<Item = &'a str>,
) -> Vec<usize> {
    let fields: Vec<&str> = fields.collect();
    let columns: Vec<&str> = columns.collect();
    let once = |names: &[&str], name: &str| names.iter().filter(|n| **n == name).count() == 1;
    let by_name: Vec<Option<usize>> = fields
        .iter()
        .map(|f| {
            (once(&fields, f) && once(&columns, f))
                .then(|| columns.iter().position(|c| c == f))
                .flatten()
        })
        .collect();
    let taken: Vec<usize> = by_name.iter().flatten().copied().collect();
    let mut free = (0..columns.len()).filter(|i| !taken.contains(i));
    by_name
        .into_iter()
        .map(|i| {
            i.or_else(|| free.next())
                .expect("as many columns as fields")
        })
        .collect()
}

/// Casts a decoded array to the type the plan expects. Integers read as timestamps are
/// milliseconds since the epoch: Sluice keeps every time in ClickHouse as such.
fn conform(array: ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, String> {
    if array.data_type() == to {
        return Ok(array);
    }
    // A composite or binary value (a `Map`, `Tuple`, `UUID` or big integer in ArrowStream)
    // is never cast into something else: its text or number would be a guess.
    let from = array.data_type();
    if from.is_nested() || matches!(from, DataType::FixedSizeBinary(_) | DataType::Binary) {
        return Err(format!("a {from} value is not read as {to}"));
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let array = match (array.data_type(), to) {
        // `DateTime` in `ArrowStream`: seconds.
        (DataType::UInt32, DataType::Timestamp(_, _)) => {
            let seconds =
                cast_with_options(&array, &DataType::Int64, &options).map_err(|e| e.to_string())?;
            cast_with_options(
                &seconds,
                &DataType::Timestamp(TimeUnit::Second, None),
                &options,
            )
            .map_err(|e| e.to_string())?
        }
        (from, DataType::Timestamp(TimeUnit::Millisecond, _)) if from.is_integer() => {
            cast_with_options(&array, &DataType::Int64, &options).map_err(|e| e.to_string())?
        }
        _ => array,
    };
    cast_with_options(&array, to, &options).map_err(|e| e.to_string())
}

/// The Arrow type Sluice reads a ClickHouse column type as, for declaring remote tables.
pub(crate) fn arrow_type(t: &DataTypeNode) -> Option<(DataType, bool)> {
    use DataTypeNode as T;
    let (inner, nullable) = match t.remove_compatible_wrappers() {
        T::Nullable(inner) => (inner.remove_compatible_wrappers(), true),
        other => (other, false),
    };
    let dt = match inner {
        T::UInt8 => DataType::UInt8,
        T::UInt16 => DataType::UInt16,
        T::UInt32 => DataType::UInt32,
        T::UInt64 => DataType::UInt64,
        T::Int8 => DataType::Int8,
        T::Int16 => DataType::Int16,
        T::Int32 => DataType::Int32,
        T::Int64 => DataType::Int64,
        T::Float32 => DataType::Float32,
        T::Float64 => DataType::Float64,
        T::Bool => DataType::Boolean,
        T::String | T::FixedString(_) => DataType::Utf8,
        T::Date | T::Date32 => DataType::Date32,
        T::DateTime(tz) => DataType::Timestamp(TimeUnit::Second, tz.as_deref().map(Arc::from)),
        T::DateTime64(_, tz) => {
            DataType::Timestamp(datetime64_unit(inner), tz.as_deref().map(Arc::from))
        }
        _ => return None,
    };
    Some((dt, nullable))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Date32Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray, UInt32Array,
    };
    use datafusion::arrow::datatypes::Schema;

    use super::*;
    use crate::arrow_stream::ArrowStreamBatches;

    /// The ArrowStream bytes of tests/golden/arrow_stream/26.9 (captured from the 26.9 engine
    /// with the settings Sluice sends, checked against it by test_clickhouse_types.py), read
    /// as a plan expecting each type: decoded, or refused with an error naming the column.
    #[test]
    fn types_as_the_servers_send_them() {
        let utc = Some(Arc::from("UTC"));
        let ms = DataType::Timestamp(TimeUnit::Millisecond, utc.clone());
        let cases: Vec<(&str, DataType)> = vec![
            ("datetime64_3", ms.clone()),
            ("datetime64_1", ms.clone()),
            (
                "datetime64_6",
                DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
            ),
            ("date32", DataType::Date32),
            ("nullable_nothing", DataType::Utf8),
            ("low_cardinality_nullable", DataType::Utf8),
            // No type of its own in Arrow: the number, as ClickHouse sends it.
            ("ipv4", DataType::UInt32),
            ("map", DataType::Utf8),
            ("tuple", DataType::Utf8),
            ("uuid", DataType::Utf8),
            ("int128", DataType::Int64),
            ("uint256", DataType::Utf8),
        ];
        let root = sluice_tests::repo_root().join("tests/golden/arrow_stream/26.9");
        let root = root.display();
        for (case, plan_type) in cases {
            let bytes = std::fs::read(format!("{root}/{case}.arrows")).unwrap();
            let mut batches = ArrowStreamBatches::default();
            batches.push(bytes::Bytes::from(bytes)).unwrap();
            batches.finish().unwrap();
            let batch = batches.next_batch().unwrap();
            let schema = Arc::new(Schema::new(vec![Field::new("v", plan_type, true)]));
            let got = BlockDecoder::new(schema, Arc::from("test")).decode_arrow(batch);
            let column = |got: Result<RecordBatch>| Arc::clone(got.unwrap().column(0));
            match case {
                "datetime64_3" | "datetime64_1" => {
                    let a = column(got);
                    let a = a
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .unwrap();
                    let want = if case == "datetime64_3" { 123 } else { 500 };
                    assert_eq!(a.values(), &[1_577_934_245_000 + want], "{case}");
                }
                "datetime64_6" => {
                    let a = column(got);
                    let a = a
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .unwrap();
                    assert_eq!(a.values(), &[-1]);
                }
                "date32" => {
                    let a = column(got);
                    let a = a.as_any().downcast_ref::<Date32Array>().unwrap();
                    assert_eq!(a.values(), &[-25_566]);
                }
                "nullable_nothing" => {
                    let a = column(got);
                    assert_eq!((a.len(), a.null_count()), (2, 2));
                }
                "low_cardinality_nullable" => {
                    let a = column(got);
                    let a = a.as_any().downcast_ref::<StringArray>().unwrap();
                    let values: Vec<_> = a.iter().collect();
                    assert_eq!(values, [Some("a"), None, Some("b"), Some("a")]);
                }
                "ipv4" => {
                    let a = column(got);
                    let a = a.as_any().downcast_ref::<UInt32Array>().unwrap();
                    assert_eq!(a.values(), &[0x0102_0304]);
                }
                _ => match got {
                    Err(Error::Decode { column, .. }) => assert_eq!(column, "v", "{case}"),
                    other => panic!("{case}: {other:?}"),
                },
            }
        }
    }

    #[test]
    fn result_columns_are_matched_to_the_plan_by_name() {
        let matched = |fields: &[&str], columns: &[&str]| {
            match_columns(fields.iter().copied(), columns.iter().copied())
        };
        // The window-function query's aggregate, as an older statement sent it: aggregates
        // first, the plan's groups first.
        assert_eq!(
            matched(
                &["m", "track_uri", "count(Int64(1))"],
                &["count(Int64(1))", "m", "track_uri"]
            ),
            [1, 2, 0]
        );
        // Same order: unchanged.
        assert_eq!(matched(&["track_uri", "ts"], &["track_uri", "ts"]), [0, 1]);
        // A column ClickHouse named after its own text takes the place no name claimed.
        assert_eq!(
            matched(
                &["date_part(month)", "track_uri"],
                &["track_uri", "toMonth(x)"]
            ),
            [1, 0]
        );
        // A name twice in the plan (a join's two track_uri) says nothing: by position.
        assert_eq!(
            matched(
                &["track_uri", "track_uri", "n"],
                &["track_uri", "track_uri", "n"]
            ),
            [0, 1, 2]
        );
    }
}
