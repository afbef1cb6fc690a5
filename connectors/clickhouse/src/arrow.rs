//! ClickHouse `Native` blocks to Arrow record batches. Columns are matched by position with
//! the schema the plan expects; each is decoded from its ClickHouse type into the natural
//! Arrow array, then cast where the plan's type differs (a `UInt64` sum read as `Int64`, a
//! time kept in milliseconds read as `Timestamp(ms)`). A type with no mapping is an error
//! naming the column, never a guess.

use std::sync::Arc;

use clickhouse::native::decode::{Decode, ValueReader};
use clickhouse::native::{Block, Column, DataTypeNode};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array,
    Int32Array, Int64Array, ListArray, PrimitiveArray, RecordBatch, RecordBatchOptions,
    StringArray, TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Field, SchemaRef, TimeUnit};

use crate::error::{Error, Result};

type BoxedError = Box<dyn std::error::Error + Send + Sync>;

/// `Date`: days since 1970-01-01 as `UInt16`.
struct ChDate(u16);

impl Decode<'_> for ChDate {
    fn compatible(t: &DataTypeNode) -> bool {
        matches!(t.remove_compatible_wrappers(), DataTypeNode::Date)
    }
    fn decode(r: &mut ValueReader<'_>) -> Result<Self, BoxedError> {
        Ok(Self(u16::from_le_bytes(*r.read_bytes_fixed()?)))
    }
}

/// `Date32`: days since 1970-01-01 as `Int32`.
struct ChDate32(i32);

impl Decode<'_> for ChDate32 {
    fn compatible(t: &DataTypeNode) -> bool {
        matches!(t.remove_compatible_wrappers(), DataTypeNode::Date32)
    }
    fn decode(r: &mut ValueReader<'_>) -> Result<Self, BoxedError> {
        Ok(Self(i32::from_le_bytes(*r.read_bytes_fixed()?)))
    }
}

/// `DateTime`: seconds since the epoch as `UInt32`.
struct ChDateTime(u32);

impl Decode<'_> for ChDateTime {
    fn compatible(t: &DataTypeNode) -> bool {
        matches!(t.remove_compatible_wrappers(), DataTypeNode::DateTime(_))
    }
    fn decode(r: &mut ValueReader<'_>) -> Result<Self, BoxedError> {
        Ok(Self(u32::from_le_bytes(*r.read_bytes_fixed()?)))
    }
}

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

    pub(crate) fn decode(&self, block: &Block) -> Result<RecordBatch> {
        let columns = block.columns();
        // Rows without columns (a count over the gateway's side) arrive as `SELECT 1`.
        let columns = if self.schema.fields().is_empty() {
            &columns[..0]
        } else {
            columns
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
        let arrays = columns
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| self.column(column, field.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(block.num_rows())),
        )
        .map_err(|e| Error::Unexpected {
            endpoint: self.endpoint.to_string(),
            message: e.to_string(),
        })
    }

    fn column(&self, column: &Column, field: &Field) -> Result<ArrayRef> {
        let decoded = decode_column(column).map_err(|e| match e {
            DecodeError::Unsupported => Error::UnsupportedType {
                endpoint: self.endpoint.to_string(),
                column: field.name().clone(),
                clickhouse_type: column.data_type().to_string(),
            },
            DecodeError::Bad(message) => Error::Decode {
                endpoint: self.endpoint.to_string(),
                column: field.name().clone(),
                message,
            },
        })?;
        conform(decoded, field.data_type()).map_err(|message| Error::Decode {
            endpoint: self.endpoint.to_string(),
            column: field.name().clone(),
            message: format!(
                "{} ({}) cannot be read as {}: {message}",
                column.name(),
                column.data_type(),
                field.data_type()
            ),
        })
    }
}

/// Casts a decoded array to the type the plan expects. Integers read as timestamps are
/// milliseconds since the epoch: Sluice keeps every time in ClickHouse as such.
fn conform(array: ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, String> {
    if array.data_type() == to {
        return Ok(array);
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let array = match (array.data_type(), to) {
        (from, DataType::Timestamp(TimeUnit::Millisecond, _)) if from.is_integer() => {
            cast_with_options(&array, &DataType::Int64, &options).map_err(|e| e.to_string())?
        }
        _ => array,
    };
    cast_with_options(&array, to, &options).map_err(|e| e.to_string())
}

enum DecodeError {
    Unsupported,
    Bad(String),
}

impl From<clickhouse::error::Error> for DecodeError {
    fn from(e: clickhouse::error::Error) -> Self {
        DecodeError::Bad(e.to_string())
    }
}

fn primitive<'a, T, A>(
    column: &'a Column,
    nullable: bool,
    f: impl Fn(T) -> A::Native,
) -> std::result::Result<ArrayRef, DecodeError>
where
    T: Decode<'a>,
    A: ArrowPrimitiveType,
    PrimitiveArray<A>: From<Vec<Option<A::Native>>> + From<Vec<A::Native>>,
{
    Ok(if nullable {
        let values = column
            .iter::<Option<T>>()?
            .map(|v| v.map(|v| v.map(&f)))
            .collect::<Result<Vec<_>, _>>()?;
        Arc::new(PrimitiveArray::<A>::from(values))
    } else {
        let values = column
            .iter::<T>()?
            .map(|v| v.map(&f))
            .collect::<Result<Vec<_>, _>>()?;
        Arc::new(PrimitiveArray::<A>::from(values))
    })
}

fn decode_column(column: &Column) -> std::result::Result<ArrayRef, DecodeError> {
    use DataTypeNode as T;
    let (inner, nullable) = match column.data_type().remove_compatible_wrappers() {
        T::Nullable(inner) => (inner.remove_compatible_wrappers(), true),
        other => (other, false),
    };
    macro_rules! prim {
        ($rust:ty, $arrow:ty) => {
            primitive::<$rust, $arrow>(column, nullable, |v| v)
        };
    }
    use datafusion::arrow::datatypes as dt;
    match inner {
        T::UInt8 => prim!(u8, dt::UInt8Type),
        T::UInt16 => prim!(u16, dt::UInt16Type),
        T::UInt32 => prim!(u32, dt::UInt32Type),
        T::UInt64 => prim!(u64, dt::UInt64Type),
        T::Int8 => prim!(i8, dt::Int8Type),
        T::Int16 => prim!(i16, dt::Int16Type),
        T::Int32 => prim!(i32, dt::Int32Type),
        T::Int64 => prim!(i64, dt::Int64Type),
        T::Float32 => prim!(f32, dt::Float32Type),
        T::Float64 => prim!(f64, dt::Float64Type),
        T::Date => primitive::<ChDate, dt::Date32Type>(column, nullable, |d| i32::from(d.0)),
        T::Date32 => primitive::<ChDate32, dt::Date32Type>(column, nullable, |d| d.0),
        T::DateTime(tz) => {
            let a = primitive::<ChDateTime, dt::TimestampSecondType>(column, nullable, |s| {
                i64::from(s.0)
            })?;
            let a = a
                .as_any()
                .downcast_ref::<TimestampSecondArray>()
                .expect("built above")
                .clone()
                .with_timezone_opt(tz.clone());
            Ok(Arc::new(a))
        }
        T::Bool => Ok(if nullable {
            Arc::new(
                column
                    .iter::<Option<bool>>()?
                    .collect::<Result<BooleanArray, _>>()?,
            )
        } else {
            Arc::new(
                column
                    .iter::<bool>()?
                    .map(|v| v.map(Some))
                    .collect::<Result<BooleanArray, _>>()?,
            )
        }),
        T::String | T::FixedString(_) => Ok(if nullable {
            Arc::new(
                column
                    .iter::<Option<&str>>()?
                    .collect::<Result<StringArray, _>>()?,
            )
        } else {
            Arc::new(
                column
                    .iter::<&str>()?
                    .map(|v| v.map(Some))
                    .collect::<Result<StringArray, _>>()?,
            )
        }),
        T::Array(elem) if !nullable => array_column(column, elem.remove_compatible_wrappers()),
        _ => Err(DecodeError::Unsupported),
    }
}

/// `Array(T)` for the element types Sluice's schema uses.
fn array_column(
    column: &Column,
    elem: &DataTypeNode,
) -> std::result::Result<ArrayRef, DecodeError> {
    fn list<'a, T: Decode<'a>>(
        column: &'a Column,
        values: impl FnOnce(Vec<T>) -> ArrayRef,
    ) -> std::result::Result<ArrayRef, DecodeError> {
        let rows = column.iter::<Vec<T>>()?.collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
        let flat: Vec<T> = rows.into_iter().flatten().collect();
        let values = values(flat);
        let field = Arc::new(Field::new_list_field(values.data_type().clone(), false));
        Ok(Arc::new(ListArray::new(
            field,
            OffsetBuffer::from_lengths(lengths),
            values,
            None,
        )))
    }
    use DataTypeNode as T;
    match elem {
        T::String | T::FixedString(_) => list::<&str>(column, |v| Arc::new(StringArray::from(v))),
        T::UInt8 => list::<u8>(column, |v| Arc::new(UInt8Array::from(v))),
        T::UInt16 => list::<u16>(column, |v| Arc::new(UInt16Array::from(v))),
        T::UInt32 => list::<u32>(column, |v| Arc::new(UInt32Array::from(v))),
        T::UInt64 => list::<u64>(column, |v| Arc::new(UInt64Array::from(v))),
        T::Int8 => list::<i8>(column, |v| Arc::new(Int8Array::from(v))),
        T::Int16 => list::<i16>(column, |v| Arc::new(Int16Array::from(v))),
        T::Int32 => list::<i32>(column, |v| Arc::new(Int32Array::from(v))),
        T::Int64 => list::<i64>(column, |v| Arc::new(Int64Array::from(v))),
        T::Float32 => list::<f32>(column, |v| Arc::new(Float32Array::from(v))),
        T::Float64 => list::<f64>(column, |v| Arc::new(Float64Array::from(v))),
        T::Date => list::<ChDate>(column, |v| {
            Arc::new(Date32Array::from(
                v.into_iter().map(|d| i32::from(d.0)).collect::<Vec<_>>(),
            ))
        }),
        _ => Err(DecodeError::Unsupported),
    }
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
        _ => return None,
    };
    Some((dt, nullable))
}
