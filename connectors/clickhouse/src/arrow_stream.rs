//! ClickHouse's `ArrowStream` result format: Arrow IPC messages, decoded as they arrive
//! into record batches with no per-value work (the buffers are used as sent, realigned
//! only where they arrive unaligned). Servers from 23.x have it with the settings Sluice
//! sends beside it ([`SETTINGS`]); 18.16 answers in `Native` ([`crate::native`]).

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::ipc::reader::StreamDecoder;

use crate::native::{ReadError, server_exception};

/// Sent with every `ArrowStream` read: strings as Arrow `Utf8` (not `Binary`),
/// `LowCardinality` columns as their plain values (not dictionaries), as the plan reads them,
/// and buffers uncompressed. Current servers compress them with LZ4 frames by default, and
/// decompressing took a fifth of the gateway's CPU in a bulk export on loopback; where
/// ClickHouse is across a network, `compression = true` compresses the whole response.
pub(crate) const SETTINGS: [(&str, &str); 3] = [
    ("output_format_arrow_string_as_string", "1"),
    ("output_format_arrow_low_cardinality_as_dictionary", "0"),
    ("output_format_arrow_compression_method", "none"),
];

/// Decodes an `ArrowStream` result's chunks into its batches, in order.
#[derive(Debug, Default)]
pub(crate) struct ArrowStreamBatches {
    decoder: StreamDecoder,
    ready: std::collections::VecDeque<RecordBatch>,
    /// The last bytes received: where a server that failed part way wrote its message.
    tail: Vec<u8>,
}

/// How much of the end of a result is kept for a server's message.
const TAIL: usize = 8 * 1024;

impl ArrowStreamBatches {
    /// Decodes what `chunk` completes; an incomplete message waits for the next chunk.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Result<(), ReadError> {
        let keep = chunk.len().min(TAIL);
        self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        if self.tail.len() > TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
        let mut buffer = Buffer::from(chunk);
        while !buffer.is_empty() {
            match self.decoder.decode(&mut buffer) {
                Ok(Some(batch)) => self.ready.push_back(batch),
                Ok(None) => {}
                Err(e) => return Err(self.failure(format!("unreadable ArrowStream result: {e}"))),
            }
        }
        Ok(())
    }

    /// The next decoded batch, if one is ready.
    pub(crate) fn next_batch(&mut self) -> Option<RecordBatch> {
        self.ready.pop_front()
    }

    /// After the response's last byte: an error if it ended inside a message.
    pub(crate) fn finish(&mut self) -> Result<(), ReadError> {
        self.decoder.finish().map_err(|e| {
            self.failure(format!(
                "the ArrowStream result ended inside a message: {e}"
            ))
        })
    }

    /// Bytes that are not Arrow IPC: ClickHouse's exception text where the server failed
    /// after it had started sending (it appends the text to the body; read as IPC it is a
    /// message that never ends), else the decoder's complaint.
    fn failure(&self, message: String) -> ReadError {
        match server_exception(&self.tail) {
            Some(text) => ReadError::Server(text),
            None => ReadError::Malformed {
                column: None,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::ipc::writer::StreamWriter;

    use super::*;

    fn stream(batches: usize) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("track_uri", DataType::Utf8, false),
            Field::new("plays", DataType::Int64, false),
        ]));
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &schema).unwrap();
        for i in 0..batches {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(vec![format!("t{i}"), "u".into()])),
                    Arc::new(Int64Array::from(vec![i as i64, 7])),
                ],
            )
            .unwrap();
            writer.write(&batch).unwrap();
        }
        writer.finish().unwrap();
        drop(writer);
        out
    }

    /// Batches come out whole however the response is cut into chunks (18.16-sized 4 KiB
    /// chunks, single bytes).
    #[test]
    fn batches_are_decoded_across_any_chunking() {
        let bytes = stream(3);
        for size in [1, 7, 4096, bytes.len()] {
            let mut batches = ArrowStreamBatches::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(size) {
                batches.push(Bytes::copy_from_slice(chunk)).unwrap();
                got.extend(std::iter::from_fn(|| batches.next_batch()));
            }
            batches.finish().unwrap();
            assert_eq!(got.len(), 3, "chunks of {size}");
            let plays = got[2]
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            assert_eq!(plays.values(), &[2, 7]);
        }
    }

    #[test]
    fn a_result_cut_short_is_an_error() {
        let bytes = stream(2);
        let mut batches = ArrowStreamBatches::default();
        batches
            .push(Bytes::copy_from_slice(&bytes[..bytes.len() - 20]))
            .unwrap();
        assert!(matches!(
            batches.finish(),
            Err(ReadError::Malformed { column: None, .. })
        ));
    }

    /// A server that fails after its first batch appends its exception to the body.
    #[test]
    fn a_failure_part_way_is_the_servers_message() {
        let mut bytes = stream(1);
        bytes.truncate(bytes.len() - 8); // no end-of-stream marker
        bytes.extend_from_slice(
            b"Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
        );
        let mut batches = ArrowStreamBatches::default();
        let pushed = batches.push(Bytes::from(bytes));
        match pushed.and_then(|()| batches.finish()) {
            Err(ReadError::Server(text)) => {
                assert!(
                    text.starts_with("Code: 241. DB::Exception: Memory limit"),
                    "{text}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
