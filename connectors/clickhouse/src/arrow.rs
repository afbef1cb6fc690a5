//! Decoded `Native` blocks to record batches of the plan's schema. Columns are matched by
//! position with the schema the plan expects; each arrives as the natural Arrow array of its
//! ClickHouse type ([`crate::native`]) and is cast where the plan's type differs (a `UInt64`
//! sum read as `Int64`, a time kept in milliseconds read as `Timestamp(ms)`). A type with no
//! mapping is an error naming the column, never a guess.

use std::sync::Arc;

use clickhouse::native::DataTypeNode;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};

use crate::error::{Error, Result};
use crate::native::{Block, Column};

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

    pub(crate) fn decode(&self, block: Block) -> Result<RecordBatch> {
        let columns = &block.columns[..];
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
            &RecordBatchOptions::new().with_row_count(Some(block.rows)),
        )
        .map_err(|e| Error::Unexpected {
            endpoint: self.endpoint.to_string(),
            message: e.to_string(),
        })
    }

    fn column(&self, column: &Column, field: &Field) -> Result<ArrayRef> {
        conform(Arc::clone(&column.array), field.data_type()).map_err(|message| Error::Decode {
            endpoint: self.endpoint.to_string(),
            column: field.name().clone(),
            message: format!(
                "{} ({}) cannot be read as {}: {message}",
                column.name,
                column.data_type,
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
