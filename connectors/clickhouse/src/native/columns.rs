//! One column of a `Native` block read into an Arrow array in one pass (or walked over
//! without building, to find where a block ends): fixed-width values copied as they lie,
//! strings into one offsets and one values buffer, `Nullable`, `Array`, `LowCardinality`.

use std::sync::Arc;

use clickhouse::native::DataTypeNode;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, ListArray, PrimitiveArray, StringArray, UInt32Array,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{ArrowPrimitiveType, Field, TimeUnit};

use super::reader::{Fault, Reader};
use super::walk_strings;

/// The bytes each value of a fixed-width type takes.
pub(super) fn fixed_width(t: &DataTypeNode) -> Option<usize> {
    use DataTypeNode as T;
    Some(match t {
        T::Bool | T::UInt8 | T::Int8 => 1,
        T::UInt16 | T::Int16 | T::Date => 2,
        T::UInt32 | T::Int32 | T::Float32 | T::Date32 | T::DateTime(_) => 4,
        T::UInt64 | T::Int64 | T::Float64 | T::DateTime64(..) => 8,
        _ => return None,
    })
}

/// Reads `rows` values of type `t` (with `nulls` from an enclosing `Nullable`), or walks over
/// them unless `BUILD`.
pub(super) fn read<const BUILD: bool>(
    r: &mut Reader<'_>,
    t: &DataTypeNode,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Result<Option<ArrayRef>, Fault> {
    use DataTypeNode as T;
    if let Some(width) = fixed_width(t) {
        let bytes = r.take_values(width, rows)?;
        return Ok(BUILD.then(|| fixed(t, bytes, nulls)));
    }
    match t {
        T::SimpleAggregateFunction(_, inner) => read::<BUILD>(r, inner, rows, nulls),
        T::Nullable(inner) => {
            let map = r.take(rows)?;
            let nulls = BUILD.then(|| NullBuffer::from_iter(map.iter().map(|&b| b == 0)));
            read::<BUILD>(r, inner, rows, nulls)
        }
        T::String => strings::<BUILD>(r, rows, nulls),
        T::FixedString(n) => {
            let bytes = r.take_values(*n, rows)?;
            if !BUILD {
                return Ok(None);
            }
            let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(*n, rows));
            utf8(offsets, bytes.to_vec(), nulls).map(Some)
        }
        T::Array(elem) => {
            let mut ends = Vec::with_capacity(if BUILD { rows } else { 0 });
            let mut last = 0u64;
            for _ in 0..rows {
                let end = r.u64()?;
                if end < last || end > u64::from(i32::MAX as u32) {
                    return Err(Fault::Malformed(format!("array offset {end} after {last}")));
                }
                last = end;
                if BUILD {
                    ends.push(end as i32);
                }
            }
            let values = read::<BUILD>(r, elem, last as usize, None)?;
            let Some(values) = values else {
                return Ok(None);
            };
            let offsets = std::iter::once(0).chain(ends).collect::<Vec<i32>>();
            let nullable = matches!(elem.remove_low_cardinality(), T::Nullable(_));
            let field = Field::new_list_field(values.data_type().clone(), nullable);
            ListArray::try_new(
                Arc::new(field),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                values,
                nulls,
            )
            .map(|a| Some(Arc::new(a) as ArrayRef))
            .map_err(|e| Fault::Malformed(e.to_string()))
        }
        T::LowCardinality(inner) => low_cardinality::<BUILD>(r, inner, rows),
        other => Err(Fault::Unsupported(other.to_string())),
    }
}

/// A fixed-width column: little-endian values, one after another.
fn fixed(t: &DataTypeNode, bytes: &[u8], nulls: Option<NullBuffer>) -> ArrayRef {
    use DataTypeNode as T;
    use datafusion::arrow::datatypes as dt;
    fn values<A: ArrowPrimitiveType, const N: usize>(
        bytes: &[u8],
        nulls: Option<NullBuffer>,
        f: impl Fn([u8; N]) -> A::Native,
    ) -> PrimitiveArray<A> {
        let v: Vec<A::Native> = bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("N bytes")))
            .collect();
        PrimitiveArray::new(ScalarBuffer::from(v), nulls)
    }
    macro_rules! le {
        ($arrow:ty, $rust:ty) => {
            Arc::new(values::<$arrow, { size_of::<$rust>() }>(
                bytes,
                nulls,
                <$rust>::from_le_bytes,
            ))
        };
    }
    match t {
        T::UInt8 => le!(dt::UInt8Type, u8),
        T::Int8 => le!(dt::Int8Type, i8),
        T::UInt16 => le!(dt::UInt16Type, u16),
        T::Int16 => le!(dt::Int16Type, i16),
        T::UInt32 => le!(dt::UInt32Type, u32),
        T::Int32 => le!(dt::Int32Type, i32),
        T::UInt64 => le!(dt::UInt64Type, u64),
        T::Int64 => le!(dt::Int64Type, i64),
        T::Float32 => le!(dt::Float32Type, f32),
        T::Float64 => le!(dt::Float64Type, f64),
        // `Date`: days since 1970-01-01 as `UInt16`.
        T::Date => Arc::new(values::<dt::Date32Type, 2>(bytes, nulls, |b| {
            i32::from(u16::from_le_bytes(b))
        })),
        T::Date32 => le!(dt::Date32Type, i32),
        // `DateTime`: seconds since the epoch as `UInt32`.
        T::DateTime(tz) => Arc::new(
            values::<dt::TimestampSecondType, 4>(bytes, nulls, |b| {
                i64::from(u32::from_le_bytes(b))
            })
            .with_timezone_opt(tz.clone()),
        ),
        // `DateTime64(p)`: ticks of 10^-p seconds as `Int64`, read in the coarsest Arrow
        // unit that holds them (scaled up where p is between two units).
        T::DateTime64(_, tz) => {
            let digits = precision_digits(t);
            let tz = tz.clone();
            macro_rules! ticks {
                ($arrow:ty, $unit_digits:expr) => {{
                    let scale = 10i64.pow($unit_digits - digits);
                    Arc::new(
                        values::<$arrow, 8>(bytes, nulls, |b| {
                            i64::from_le_bytes(b).saturating_mul(scale)
                        })
                        .with_timezone_opt(tz),
                    )
                }};
            }
            match datetime64_unit(t) {
                TimeUnit::Second => ticks!(dt::TimestampSecondType, 0),
                TimeUnit::Millisecond => ticks!(dt::TimestampMillisecondType, 3),
                TimeUnit::Microsecond => ticks!(dt::TimestampMicrosecondType, 6),
                TimeUnit::Nanosecond => ticks!(dt::TimestampNanosecondType, 9),
            }
        }
        T::Bool => Arc::new(BooleanArray::new(
            BooleanBuffer::from_iter(bytes.iter().map(|&b| b != 0)),
            nulls,
        )),
        _ => unreachable!("fixed_width covers these types"),
    }
}

/// The Arrow unit a `DateTime64` is read in: the coarsest that holds its precision.
pub(crate) fn datetime64_unit(t: &DataTypeNode) -> TimeUnit {
    match precision_digits(t) {
        0 => TimeUnit::Second,
        1..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

/// The digits after the second a `DateTime64` keeps, from its name (`DateTime64(3, 'UTC')`):
/// the `clickhouse` crate does not export the type of its precision.
fn precision_digits(t: &DataTypeNode) -> u32 {
    t.to_string()
        .strip_prefix("DateTime64(")
        .and_then(|rest| rest.chars().next())
        .and_then(|c| c.to_digit(10))
        .expect("a DateTime64's name starts with its precision")
}

/// `String`: each value is its length (a varuint) and its bytes.
fn strings<const BUILD: bool>(
    r: &mut Reader<'_>,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Result<Option<ArrayRef>, Fault> {
    if !BUILD {
        return walk_strings(r, rows, &mut None).map(|()| None);
    }
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0i32);
    let start = r.pos;
    let mut values = Vec::with_capacity(r.buf.len().saturating_sub(start).min(1 << 24));
    for _ in 0..rows {
        let len = r.length("a string's length")?;
        values.extend_from_slice(r.take(len)?);
        let end = i32::try_from(values.len())
            .map_err(|_| Fault::Malformed("a block's strings exceed 2 GiB".into()))?;
        offsets.push(end);
    }
    utf8(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        values,
        nulls,
    )
    .map(Some)
}

fn utf8(
    offsets: OffsetBuffer<i32>,
    values: Vec<u8>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, Fault> {
    // Validates the values as UTF-8 once, and that every offset falls between characters.
    StringArray::try_new(offsets, Buffer::from_vec(values), nulls)
        .map(|a| Arc::new(a) as ArrayRef)
        .map_err(|e| Fault::Malformed(e.to_string()))
}

/// `LowCardinality(T)`: a dictionary of `T` and one key per row; in `LowCardinality(Nullable(T))`
/// key 0 is NULL. Read as plain `T`, as the remote table declares it.
fn low_cardinality<const BUILD: bool>(
    r: &mut Reader<'_>,
    inner: &DataTypeNode,
    rows: usize,
) -> Result<Option<ArrayRef>, Fault> {
    // Keys are unsigned integers of the width the metadata's low byte names; the server
    // always sets "has additional keys" and "needs to update the dictionary" (0x600).
    const FLAGS: u64 = 0x600;
    let (dict_type, nullable) = match inner {
        DataTypeNode::Nullable(t) => (&**t, true),
        t => (t, false),
    };
    if rows == 0 {
        return read::<BUILD>(r, dict_type, 0, None);
    }
    let metadata = r.u64()?;
    let width = match metadata & 0xff {
        0 => 1,
        1 => 2,
        2 => 4,
        3 => 8,
        k => return Err(Fault::Malformed(format!("LowCardinality key type {k}"))),
    };
    if metadata & !0xff != FLAGS {
        return Err(Fault::Malformed(format!(
            "LowCardinality metadata {metadata:#x}"
        )));
    }
    let dict_len = usize::try_from(r.u64()?)
        .map_err(|_| Fault::Malformed("LowCardinality dictionary too large".into()))?;
    let dict = read::<BUILD>(r, dict_type, dict_len, None)?;
    let keys_len = r.u64()?;
    if keys_len != rows as u64 {
        return Err(Fault::Malformed(format!(
            "LowCardinality has {keys_len} keys for {rows} rows"
        )));
    }
    let keys = r.take(width * rows)?;
    let Some(dict) = dict else {
        return Ok(None);
    };
    let mut indices = Vec::with_capacity(rows);
    for key in keys.chunks_exact(width) {
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(key);
        let key = u64::from_le_bytes(le);
        if key >= dict_len as u64 {
            return Err(Fault::Malformed(format!(
                "LowCardinality key {key} past its dictionary of {dict_len}"
            )));
        }
        indices.push(key as u32);
    }
    let nulls = nullable.then(|| NullBuffer::from_iter(indices.iter().map(|&k| k != 0)));
    let indices = UInt32Array::new(ScalarBuffer::from(indices), nulls);
    take(&dict, &indices, None)
        .map(Some)
        .map_err(|e| Fault::Malformed(e.to_string()))
}
