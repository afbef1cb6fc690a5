//! A result read up to the caps a model's context can hold, then dropped: dropping the
//! stream cancels the query in the gateway, so a million-row answer costs the batches read
//! before the cap, not the million rows.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_json::writer::{LineDelimited, WriterBuilder};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::error::{Error, Result};

/// The row and byte caps of `query`, and the ceiling a caller's `max_rows` may reach.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Rows returned when the caller does not say.
    pub default_rows: usize,
    /// The most rows a caller may ask for.
    pub max_rows: usize,
    /// The most bytes of rows (as JSON) returned.
    pub max_bytes: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            default_rows: 200,
            max_rows: 1000,
            max_bytes: 64 * 1024,
        }
    }
}

impl Caps {
    /// The caps, if they can be served: none zero, the default within the ceiling.
    pub fn checked(self) -> std::result::Result<Self, String> {
        if self.default_rows == 0 || self.max_rows == 0 || self.max_bytes == 0 {
            return Err("default_rows, max_rows and max_bytes must be above 0".into());
        }
        if self.default_rows > self.max_rows {
            return Err(format!(
                "default_rows ({}) is above max_rows ({})",
                self.default_rows, self.max_rows
            ));
        }
        Ok(self)
    }
}

/// Why a result was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    Rows(usize),
    Bytes(usize),
}

/// The rows read, each as a JSON array of its values in column order (compact, and right
/// when two columns share a name), within the caps.
#[derive(Debug)]
pub(crate) struct CappedRows {
    pub(crate) schema: SchemaRef,
    pub(crate) rows: Vec<Value>,
    /// Each row's cells as text, for the text table.
    pub(crate) cells: Vec<Vec<String>>,
    pub(crate) bytes: usize,
    /// Set when rows were left unread.
    pub(crate) cut: Option<Cut>,
}

/// Reads `batches` until it ends or `rows` rows or `bytes` bytes of JSON are held; then
/// looks for one more row (so that `cut` is said only when rows were really left) and
/// drops the stream.
pub(crate) async fn read_capped<S, E>(
    schema: SchemaRef,
    mut batches: S,
    rows: usize,
    bytes: usize,
) -> Result<CappedRows>
where
    S: Stream<Item = std::result::Result<RecordBatch, E>> + Unpin,
    Error: From<E>,
{
    let mut out = CappedRows {
        schema,
        rows: Vec::new(),
        cells: Vec::new(),
        bytes: 0,
        cut: None,
    };
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        if out.rows.len() == rows {
            if batch.num_rows() > 0 {
                out.cut = Some(Cut::Rows(rows));
                break;
            }
            continue;
        }
        let take = batch.num_rows().min(rows - out.rows.len());
        let slice = batch.slice(0, take);
        let values = json_rows(&slice)?;
        let cells = text_cells(&slice)?;
        for (row, cells) in values.into_iter().zip(cells) {
            let size = serde_json::to_vec(&row).map_or(0, |v| v.len());
            if out.bytes + size > bytes {
                out.cut = Some(Cut::Bytes(bytes));
                return Ok(out);
            }
            out.bytes += size;
            out.rows.push(row);
            out.cells.push(cells);
        }
        if take < batch.num_rows() {
            out.cut = Some(Cut::Rows(rows));
            break;
        }
    }
    Ok(out)
}

/// Each row as an array of its values, as arrow-json writes them (timestamps as RFC 3339
/// text, nulls as `null`): one column at a time, so that order and repeated names survive.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Value>> {
    let mut rows: Vec<Vec<Value>> = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let one = Arc::new(Schema::new(vec![
            Field::new("v", field.data_type().clone(), true)
                .with_metadata(field.metadata().clone()),
        ]));
        let single = RecordBatch::try_new(one, vec![Arc::clone(column)])?;
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, LineDelimited>(Vec::new());
        writer.write(&single)?;
        writer.finish()?;
        let text = writer.into_inner();
        let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        for (row, line) in rows.iter_mut().zip(lines) {
            let mut object: serde_json::Map<String, Value> = serde_json::from_slice(line)
                .map_err(|e| Error::Answer(format!("a value as JSON: {e}")))?;
            row.push(object.remove("v").unwrap_or(Value::Null));
        }
    }
    Ok(rows.into_iter().map(Value::Array).collect())
}

/// Each row's cells as Arrow displays them (`NULL` for nulls).
fn text_cells(batch: &RecordBatch) -> Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect()
        })
        .collect())
}

impl CappedRows {
    /// A compact text table: a header, then one line per row, cells separated by ` | `.
    pub(crate) fn text_table(&self) -> String {
        let mut out = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(" | ");
        for row in &self.cells {
            out.push('\n');
            out.push_str(&row.join(" | "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::DataType;

    use super::*;

    fn batches(n: usize, per: usize) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batches = (0..n)
            .map(|b| {
                let ids: Vec<i64> = (0..per).map(|i| (b * per + i) as i64).collect();
                let names: Vec<Option<String>> = ids
                    .iter()
                    .map(|i| (i % 2 == 0).then(|| format!("t{i}")))
                    .collect();
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from(ids)),
                        Arc::new(StringArray::from(names)),
                    ],
                )
                .unwrap()
            })
            .collect();
        (schema, batches)
    }

    async fn read(n: usize, per: usize, rows: usize, bytes: usize) -> CappedRows {
        let (schema, b) = batches(n, per);
        let stream = futures::stream::iter(b.into_iter().map(Ok::<_, Error>));
        read_capped(schema, stream, rows, bytes).await.unwrap()
    }

    #[test]
    fn caps_that_cannot_be_served_are_refused() {
        assert!(Caps::default().checked().is_ok());
        let e = Caps {
            default_rows: 300,
            max_rows: 100,
            ..Caps::default()
        }
        .checked()
        .unwrap_err();
        assert_eq!(e, "default_rows (300) is above max_rows (100)");
        let zero = Caps {
            max_bytes: 0,
            ..Caps::default()
        };
        assert!(zero.checked().is_err());
    }

    #[tokio::test]
    async fn a_result_under_the_caps_is_whole() {
        let r = read(3, 4, 200, 65536).await;
        assert_eq!(r.rows.len(), 12);
        assert_eq!(r.cut, None);
        assert_eq!(r.rows[1], serde_json::json!([1, null]));
        assert_eq!(r.rows[2], serde_json::json!([2, "t2"]));
        assert_eq!(r.text_table().lines().nth(1), Some("0 | t0"));
        assert_eq!(r.text_table().lines().nth(2), Some("1 | NULL"));
    }

    #[tokio::test]
    async fn repeated_column_names_keep_both_values_in_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("n", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![7])),
                Arc::new(StringArray::from(vec!["seven"])),
            ],
        )
        .unwrap();
        let stream = futures::stream::iter([Ok::<_, Error>(batch)]);
        let r = read_capped(schema, stream, 10, 1000).await.unwrap();
        assert_eq!(r.rows, vec![serde_json::json!([7, "seven"])]);
    }

    #[tokio::test]
    async fn rows_stop_at_the_row_cap_and_say_so() {
        let r = read(5, 100, 150, 1 << 20).await;
        assert_eq!(r.rows.len(), 150);
        assert_eq!(r.cut, Some(Cut::Rows(150)));
    }

    #[tokio::test]
    async fn exactly_the_cap_with_nothing_left_is_not_cut() {
        let r = read(2, 100, 200, 1 << 20).await;
        assert_eq!((r.rows.len(), r.cut), (200, None));
    }

    #[tokio::test]
    async fn bytes_stop_at_the_byte_cap() {
        let r = read(5, 100, 1000, 300).await;
        assert!(r.bytes <= 300);
        assert!((1..100).contains(&r.rows.len()), "{}", r.rows.len());
        assert_eq!(r.cut, Some(Cut::Bytes(300)));
    }

    #[tokio::test]
    async fn reading_stops_at_the_cap_without_pulling_the_rest() {
        let (schema, b) = batches(1, 10);
        let first = b[0].clone();
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&pulled);
        // An endless stream: the reader must stop after the cap and one look beyond it.
        let endless = futures::stream::repeat_with(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, Error>(first.clone())
        });
        let r = read_capped(schema, Box::pin(endless), 25, 1 << 20)
            .await
            .unwrap();
        assert_eq!(r.rows.len(), 25);
        assert_eq!(pulled.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
