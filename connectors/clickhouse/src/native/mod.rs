//! ClickHouse's `Native` result format, read straight into Arrow arrays.
//!
//! A result arrives as HTTP chunks (4 KiB each from 18.16). [`NativeBlocks`] gathers them
//! until a whole block is buffered, then decodes it column by column in one pass: fixed-width
//! values are copied as they lie, a string column becomes one offsets buffer and one values
//! buffer (validated as UTF-8 once). The `clickhouse` crate's own reader awaits every value
//! of a string column into a layout of its own, which then had to be walked value by value
//! again into Arrow: together 38% of the gateway's CPU in a bulk export.
//!
//! A block's length is not in the format: it is found by walking the block's structure
//! (lengths of strings, sizes of arrays) without decoding, resumed where it stopped as more
//! bytes arrive, and retried only once the buffer has grown by half.

use bytes::BytesMut;
use clickhouse::native::DataTypeNode;
use datafusion::arrow::array::ArrayRef;

mod columns;
mod reader;

pub(crate) use columns::datetime64_unit;
pub(crate) use reader::server_exception;

use columns::read;
use reader::{ColumnFault, Fault, Reader};

/// The first attempt to frame a block waits for this many bytes (or the end of the result).
const FIRST_ATTEMPT: usize = 64 * 1024;

/// One decoded block: its row count and its columns in the server's order.
#[derive(Debug)]
pub(crate) struct Block {
    pub rows: usize,
    pub columns: Vec<Column>,
}

#[derive(Debug)]
pub(crate) struct Column {
    pub name: String,
    pub data_type: DataTypeNode,
    pub array: ArrayRef,
}

/// Why a result could not be read.
#[derive(Debug, PartialEq)]
pub(crate) enum ReadError {
    /// A column of a type Sluice has no Arrow mapping for.
    Unsupported { column: String, data_type: String },
    /// Bytes that are not a `Native` block, named by column where one is known.
    Malformed {
        column: Option<String>,
        message: String,
    },
    /// ClickHouse failed after it had started sending: its exception text ends the body.
    Server(String),
}

/// Buffers a `Native` result's bytes and hands out its blocks as they complete.
#[derive(Debug)]
pub(crate) struct NativeBlocks {
    buf: BytesMut,
    /// Bytes buffered before the first attempt to frame a block.
    first_attempt: usize,
    /// Buffered bytes needed before the next attempt to frame a block.
    next_attempt: usize,
    /// How far the walk of the block at the buffer's start got.
    walk: Walk,
}

/// Where the walk of an incomplete block resumes, so that no string is walked twice: after
/// the header, at the first column not walked whole, and within a top-level string column
/// at its first string not walked. Other columns are walked again from their start.
#[derive(Debug, Default, PartialEq)]
struct Walk {
    header: Option<(usize, usize)>,
    columns_done: usize,
    column_start: usize,
    /// Strings walked in the current column, and where the next one starts.
    strings: Option<(usize, usize)>,
}

impl Default for NativeBlocks {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            first_attempt: FIRST_ATTEMPT,
            next_attempt: 0,
            walk: Walk::default(),
        }
    }
}

impl NativeBlocks {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next block, if all of it is buffered.
    pub(crate) fn next_block(&mut self) -> Result<Option<Block>, ReadError> {
        if self.buf.len() < self.next_attempt.max(self.first_attempt) {
            return Ok(None);
        }
        self.frame()
    }

    /// After the response's last byte: the blocks still buffered, one per call, then `None`.
    /// Bytes that do not make a whole block are an error.
    pub(crate) fn finish(&mut self) -> Result<Option<Block>, ReadError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match self.frame()? {
            Some(block) => Ok(Some(block)),
            None => Err(self.failure(Fault::Malformed(format!(
                "the result ended inside a block ({} bytes left over)",
                self.buf.len()
            )))),
        }
    }

    fn frame(&mut self) -> Result<Option<Block>, ReadError> {
        match walk_block(&self.buf, &mut self.walk) {
            Ok(len) => {
                let bytes = self.buf.split_to(len);
                self.next_attempt = 0;
                self.walk = Walk::default();
                let mut reader = Reader::new(&bytes);
                read_block(&mut reader).map(Some).map_err(|(column, f)| {
                    f.into_error(column, &bytes)
                        .expect("the walk framed this block")
                })
            }
            Err((_, Fault::Short { needed })) => {
                self.next_attempt = needed.max(self.buf.len() + self.buf.len() / 2);
                Ok(None)
            }
            Err((column, fault)) => Err(fault
                .into_error(column, &self.buf)
                .expect("not a short read")),
        }
    }

    fn failure(&self, fault: Fault) -> ReadError {
        fault
            .into_error(None, &self.buf)
            .unwrap_or_else(|| ReadError::Malformed {
                column: None,
                message: "truncated block".into(),
            })
    }
}

fn header(r: &mut Reader<'_>) -> Result<(usize, usize), ColumnFault> {
    let columns = r.length("a column count").map_err(|f| (None, f))?;
    let rows = r.length("a row count").map_err(|f| (None, f))?;
    Ok((columns, rows))
}

/// A column's name and type, then the prefixes its data starts with (if it has rows).
fn column_head<'a>(
    r: &mut Reader<'a>,
    rows: usize,
) -> Result<(&'a str, DataTypeNode), ColumnFault> {
    let name = r.text("a column name").map_err(|f| (None, f))?;
    let in_column = |f| (Some(name.to_string()), f);
    let type_name = r.text("a column type").map_err(in_column)?;
    let data_type = parse_type(type_name).map_err(in_column)?;
    if rows > 0 {
        state_prefix(r, &data_type).map_err(in_column)?;
    }
    Ok((name, data_type))
}

/// A column's type from its name. `Nothing` (the type of a bare `NULL`, and of the elements of
/// `[]`) is laid out as one byte per value, as `UInt8` is, and never holds a value: so
/// `Nullable(Nothing)` is read as `Nullable(UInt8)` whose every value is NULL, and
/// `Array(Nothing)` as arrays of `UInt8` that are all empty. A type the parser does not
/// know is refused by name.
fn parse_type(type_name: &str) -> Result<DataTypeNode, Fault> {
    let readable = type_name
        .replace("Nullable(Nothing)", "Nullable(UInt8)")
        .replace("Array(Nothing)", "Array(UInt8)");
    DataTypeNode::new(&readable).map_err(|_| Fault::Unsupported(type_name.to_string()))
}

/// The length of the block at the start of `buf`, walked without decoding from where the
/// last walk stopped (`walk`).
fn walk_block(buf: &[u8], walk: &mut Walk) -> Result<usize, ColumnFault> {
    let mut r = Reader::new(buf);
    let (columns, rows) = match walk.header {
        Some(h) => h,
        None => {
            let h = header(&mut r)?;
            walk.header = Some(h);
            walk.column_start = r.pos;
            h
        }
    };
    while walk.columns_done < columns {
        r.pos = walk.column_start;
        let (name, data_type) = column_head(&mut r, rows)?;
        let walked = match (&data_type, rows) {
            (_, 0) => Ok(()),
            (DataTypeNode::String, _) => walk_strings(&mut r, rows, &mut walk.strings),
            (DataTypeNode::Nullable(inner), _) if **inner == DataTypeNode::String => r
                .skip(rows)
                .and_then(|()| walk_strings(&mut r, rows, &mut walk.strings)),
            (t, _) => read::<false>(&mut r, t, rows, None).map(|_| ()),
        };
        walked.map_err(|f| (Some(name.to_string()), f))?;
        walk.columns_done += 1;
        walk.column_start = r.pos;
        walk.strings = None;
    }
    Ok(r.pos)
}

/// Walks a column's strings from where `progress` says the last walk stopped.
fn walk_strings(
    r: &mut Reader<'_>,
    rows: usize,
    progress: &mut Option<(usize, usize)>,
) -> Result<(), Fault> {
    let (mut done, at) = progress.unwrap_or((0, r.pos));
    r.pos = at;
    while done < rows {
        let start = r.pos;
        let step = r.length("a string's length").and_then(|len| r.skip(len));
        if let Err(fault) = step {
            *progress = Some((done, start));
            return Err(fault);
        }
        done += 1;
    }
    Ok(())
}

/// Reads one whole block; a fault carries the column it happened in.
fn read_block(r: &mut Reader<'_>) -> Result<Block, ColumnFault> {
    let (columns, rows) = header(r)?;
    let mut out = Vec::with_capacity(columns);
    for _ in 0..columns {
        let (name, data_type) = column_head(r, rows)?;
        let in_column = |f| (Some(name.to_string()), f);
        let array = read::<true>(r, &data_type, rows, None)
            .map_err(in_column)?
            .expect("built");
        out.push(Column {
            name: name.to_string(),
            data_type,
            array,
        });
    }
    Ok(Block { rows, columns: out })
}

/// The serialization prefixes a column's data starts with: one per `LowCardinality` in it.
fn state_prefix(r: &mut Reader<'_>, t: &DataTypeNode) -> Result<(), Fault> {
    use DataTypeNode as T;
    match t {
        T::LowCardinality(_) => match r.u64()? {
            1 => Ok(()),
            v => Err(Fault::Malformed(format!(
                "LowCardinality serialization version {v}, expected 1"
            ))),
        },
        T::Array(elem) => state_prefix(r, elem),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Array, AsArray, Date32Array, Int64Array, StringArray, TimestampSecondArray, UInt8Array,
    };
    use datafusion::arrow::datatypes::{Int32Type, UInt64Type};

    use std::sync::Arc;

    use super::*;

    /// Writes `Native` bytes the way ClickHouse does.
    #[derive(Default)]
    struct Native(Vec<u8>);

    impl Native {
        fn varuint(&mut self, mut v: u64) -> &mut Self {
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(byte);
                    return self;
                }
                self.0.push(byte | 0x80);
            }
        }
        fn string(&mut self, s: &str) -> &mut Self {
            self.varuint(s.len() as u64);
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        fn bytes(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        fn u64(&mut self, v: u64) -> &mut Self {
            self.bytes(&v.to_le_bytes())
        }
        fn header(&mut self, columns: u64, rows: u64) -> &mut Self {
            self.varuint(columns).varuint(rows)
        }
        fn column(&mut self, name: &str, data_type: &str) -> &mut Self {
            self.string(name).string(data_type)
        }
    }

    /// Two blocks of `user_id String, ts UInt64`, as a bulk read sends them.
    fn two_blocks() -> Vec<u8> {
        let mut n = Native::default();
        for (block, rows) in [(0u64, 3u64), (1, 2)] {
            n.header(2, rows).column("user_id", "String");
            for i in 0..rows {
                n.string(&format!("listener-{block}-{i}-é"));
            }
            n.column("ts", "UInt64");
            for i in 0..rows {
                n.u64(1_000 * block + i);
            }
        }
        n.0
    }

    fn read_all(bytes: &[u8], chunk: usize) -> Result<Vec<Block>, ReadError> {
        read_chunked(NativeBlocks::default(), bytes, chunk)
    }

    fn read_chunked(
        mut blocks: NativeBlocks,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<Vec<Block>, ReadError> {
        let mut out = vec![];
        for c in bytes.chunks(chunk) {
            blocks.push(c);
            while let Some(b) = blocks.next_block()? {
                out.push(b);
            }
        }
        while let Some(b) = blocks.finish()? {
            out.push(b);
        }
        Ok(out)
    }

    #[test]
    fn blocks_are_read_whole_however_the_bytes_are_chunked() {
        let bytes = two_blocks();
        for chunk in [1, 3, 7, 4096, bytes.len()] {
            let blocks = read_all(&bytes, chunk).unwrap();
            assert_eq!(blocks.len(), 2, "chunks of {chunk}");
            assert_eq!((blocks[0].rows, blocks[1].rows), (3, 2));
            let users = blocks[1].columns[0].array.as_string::<i32>();
            assert_eq!(users.value(1), "listener-1-1-é");
            let ts = blocks[1].columns[1].array.as_primitive::<UInt64Type>();
            assert_eq!(ts.values(), &[1000, 1001]);
            assert_eq!(blocks[0].columns[1].name, "ts");
        }
    }

    /// With no minimum for the first attempt, the walk stops and resumes inside the block.
    #[test]
    fn the_walk_resumes_where_it_stopped() {
        let mut n = Native::default();
        n.header(3, 3)
            .column("s", "Nullable(String)")
            .bytes(&[0, 1, 0]);
        n.string("a").string("").string("ccc");
        n.column("arr", "Array(String)").u64(1).u64(1).u64(2);
        n.string("x").string("y");
        n.column("t", "String").string("p").string("q").string("r");
        let eager = || NativeBlocks {
            first_attempt: 0,
            ..NativeBlocks::default()
        };
        for chunk in 1..=5 {
            let [block] = &read_chunked(eager(), &n.0, chunk).unwrap()[..] else {
                panic!("one block")
            };
            let s = block.columns[0].array.as_string::<i32>();
            assert_eq!(s.iter().collect::<Vec<_>>(), [Some("a"), None, Some("ccc")]);
            let lists = block.columns[1].array.as_list::<i32>();
            assert_eq!(lists.value_offsets(), &[0, 1, 1, 2]);
            let t = block.columns[2].array.as_string::<i32>();
            assert_eq!(t.value(2), "r");
        }
        // Cut inside the last column: the walk keeps the strings it has passed.
        let mut blocks = eager();
        blocks.push(&n.0[..n.0.len() - 3]);
        assert!(blocks.next_block().unwrap().is_none());
        assert_eq!(blocks.walk.columns_done, 2);
        assert!(
            matches!(blocks.walk.strings, Some((1, _))),
            "{:?}",
            blocks.walk
        );
        blocks.push(&n.0[n.0.len() - 3..]);
        assert!(
            blocks.next_block().unwrap().is_none(),
            "not the half more it waits for"
        );
        assert_eq!(blocks.finish().unwrap().expect("whole").rows, 3);
        assert_eq!(blocks.walk, Walk::default());
    }

    #[test]
    fn a_large_block_is_framed_once_the_buffer_holds_it() {
        let rows = 100_000u64;
        let mut n = Native::default();
        n.header(1, rows).column("track_uri", "String");
        for i in 0..rows {
            n.string(&format!("track:{i:022}"));
        }
        let blocks = read_all(&n.0, 4096).unwrap();
        assert_eq!(blocks.len(), 1);
        let uris = blocks[0].columns[0].array.as_string::<i32>();
        assert_eq!(uris.len(), 100_000);
        assert_eq!(uris.value(99_999), format!("track:{:022}", 99_999));
    }

    #[test]
    fn fixed_width_types_nulls_and_arrays() {
        let mut n = Native::default();
        n.header(6, 2);
        n.column("n", "Nullable(Int64)")
            .bytes(&[1, 0])
            .bytes(&0i64.to_le_bytes())
            .bytes(&(-5i64).to_le_bytes());
        n.column("d", "Date")
            .bytes(&17897u16.to_le_bytes())
            .bytes(&0u16.to_le_bytes());
        n.column("dt", "DateTime('UTC')")
            .bytes(&1_546_300_800u32.to_le_bytes())
            .bytes(&0u32.to_le_bytes());
        n.column("arr", "Array(String)").u64(2).u64(3);
        n.string("a").string("b").string("c");
        n.column("fs", "FixedString(2)").bytes(b"abcd");
        n.column("b", "UInt8").bytes(&[7, 8]);
        let [block] = &read_all(&n.0, 5).unwrap()[..] else {
            panic!("one block")
        };
        let c = &block.columns;
        let ints = c[0].array.as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(ints.is_null(0));
        assert_eq!(ints.value(1), -5);
        let days = c[1].array.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(days.values(), &[17897, 0]);
        let secs = c[2]
            .array
            .as_any()
            .downcast_ref::<TimestampSecondArray>()
            .unwrap();
        assert_eq!(secs.value(0), 1_546_300_800);
        assert_eq!(secs.timezone(), Some("UTC"));
        let lists = c[3].array.as_list::<i32>();
        assert_eq!(lists.value_offsets(), &[0, 2, 3]);
        let values = lists.values().as_string::<i32>();
        assert_eq!(values.iter().flatten().collect::<Vec<_>>(), ["a", "b", "c"]);
        let fixed = c[4].array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((fixed.value(0), fixed.value(1)), ("ab", "cd"));
        let bytes = c[5].array.as_any().downcast_ref::<UInt8Array>().unwrap();
        assert_eq!(bytes.values(), &[7, 8]);
    }

    #[test]
    fn low_cardinality_is_read_as_its_plain_type() {
        let mut n = Native::default();
        n.header(2, 3);
        // Prefix, metadata (UInt8 keys), dictionary, keys.
        n.column("lc", "LowCardinality(String)")
            .u64(1)
            .u64(0x600)
            .u64(2);
        n.string("x").string("y").u64(3).bytes(&[1, 0, 1]);
        n.column("lcn", "LowCardinality(Nullable(String))")
            .u64(1)
            .u64(0x600)
            .u64(2);
        n.string("").string("z").u64(3).bytes(&[0, 1, 0]);
        let [block] = &read_all(&n.0, 4).unwrap()[..] else {
            panic!("one block")
        };
        let lc = block.columns[0].array.as_string::<i32>();
        assert_eq!(
            lc.iter().collect::<Vec<_>>(),
            [Some("y"), Some("x"), Some("y")]
        );
        let lcn = block.columns[1].array.as_string::<i32>();
        assert_eq!(lcn.iter().collect::<Vec<_>>(), [None, Some("z"), None]);
    }

    #[test]
    fn an_empty_block_still_has_typed_columns() {
        let mut n = Native::default();
        n.header(2, 0)
            .column("a", "Nullable(Int32)")
            .column("b", "Array(UInt32)");
        let [block] = &read_all(&n.0, 64).unwrap()[..] else {
            panic!("one block")
        };
        assert_eq!(block.columns[0].array.as_primitive::<Int32Type>().len(), 0);
        assert_eq!(block.columns[1].array.as_list::<i32>().len(), 0);
    }

    #[test]
    fn unreadable_results_are_errors_that_say_why() {
        // A type with no Arrow mapping names its column.
        let mut n = Native::default();
        n.header(1, 1).column("id", "UUID").bytes(&[0; 16]);
        assert_eq!(
            read_all(&n.0, 64).unwrap_err(),
            ReadError::Unsupported {
                column: "id".into(),
                data_type: "UUID".into()
            }
        );
        // A result cut inside a block.
        let bytes = two_blocks();
        match read_all(&bytes[..bytes.len() - 3], 64).unwrap_err() {
            ReadError::Malformed { message, .. } => assert!(message.contains("ended inside")),
            other => panic!("{other:?}"),
        }
        // Invalid UTF-8 in a string column.
        let mut n = Native::default();
        n.header(1, 1)
            .column("s", "String")
            .varuint(2)
            .bytes(&[0xff, 0xfe]);
        match read_all(&n.0, 64).unwrap_err() {
            ReadError::Malformed { column, .. } => assert_eq!(column.as_deref(), Some("s")),
            other => panic!("{other:?}"),
        }
        // ClickHouse failing after it started sending appends its exception to the body.
        let mut bytes = two_blocks();
        bytes.truncate(20);
        bytes.extend_from_slice(
            b"Code: 241, e.displayText() = DB::Exception: Memory limit exceeded\n",
        );
        match read_all(&bytes, 4096).unwrap_err() {
            ReadError::Server(text) => {
                assert!(text.starts_with("Code: 241"), "{text}");
                assert!(text.ends_with("Memory limit exceeded"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// The types current servers return and 18.16 never did, in the bytes the servers send
    /// (captured by tests/python/test_clickhouse_types.py, which checks them against both
    /// servers): each is decoded, or refused with an error naming its column.
    #[test]
    fn types_as_the_servers_send_them() {
        use datafusion::arrow::array::{
            Date32Array, TimestampMicrosecondArray, TimestampMillisecondArray,
        };
        use datafusion::arrow::datatypes::{DataType, TimeUnit};

        let utc = Some(Arc::from("UTC"));
        let ms = |a: &ArrayRef| {
            a.as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .cloned()
        };
        let decoded = |case: &str, got: &ArrayRef| match case {
            "datetime64_3" => {
                assert_eq!(
                    got.data_type(),
                    &DataType::Timestamp(TimeUnit::Millisecond, utc.clone())
                );
                assert_eq!(ms(got).unwrap().values(), &[1_577_934_245_123]);
            }
            // Tenths of a second, read as milliseconds.
            "datetime64_1" => assert_eq!(ms(got).unwrap().values(), &[1_577_934_245_500]),
            "datetime64_6" => {
                let us = got.as_any().downcast_ref::<TimestampMicrosecondArray>();
                assert_eq!(us.unwrap().values(), &[-1]);
            }
            "date32" => {
                let days = got.as_any().downcast_ref::<Date32Array>().unwrap();
                assert_eq!(days.values(), &[-25_566]);
            }
            "nullable_nothing" => {
                assert_eq!((got.len(), got.null_count()), (2, 2));
            }
            "array_nothing" => {
                let list = got.as_list::<i32>();
                assert_eq!((list.len(), list.value_length(0)), (1, 0));
            }
            "low_cardinality_nullable" => {
                let s = got.as_any().downcast_ref::<StringArray>().unwrap();
                let values: Vec<_> = s.iter().collect();
                assert_eq!(values, [Some("a"), None, Some("b"), Some("a")]);
            }
            other => panic!(
                "{other}: decoded as {:?}, expected a refusal",
                got.data_type()
            ),
        };
        let refused = ["map", "tuple", "uuid", "ipv4", "int128", "uint256"];
        let root = sluice_tests::repo_root().join("tests/golden/native");
        let root = root.display();
        let mut seen = 0;
        for version in ["18.16", "26.9"] {
            for entry in std::fs::read_dir(format!("{root}/{version}")).unwrap() {
                let path = entry.unwrap().path();
                let case = path.file_stem().unwrap().to_str().unwrap().to_string();
                let bytes = std::fs::read(&path).unwrap();
                // 18.16's 4 KiB chunks, and the whole result at once.
                for chunk in [4096, bytes.len()] {
                    match read_all(&bytes, chunk) {
                        Ok(blocks) => {
                            let column = &blocks[0].columns[0];
                            assert_eq!(column.name, "v");
                            decoded(&case, &column.array);
                        }
                        Err(ReadError::Unsupported { column, data_type }) => {
                            assert!(refused.contains(&case.as_str()), "{version} {case}");
                            assert_eq!(column, "v", "{version} {case}: {data_type}");
                        }
                        Err(e) => panic!("{version} {case}: {e:?}"),
                    }
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 17, "every captured case was read");
    }
}
