//! The bytes of a `Native` result as they are read: lengths, values and names, and what
//! stops a read (a short buffer, a type without a mapping, bytes that are not `Native`).

use super::ReadError;

/// What stopped a read, before the column is known.
#[derive(Debug)]
pub(super) enum Fault {
    /// The block goes on past the buffer; at least `needed` bytes are needed in all.
    Short {
        needed: usize,
    },
    Unsupported(String),
    Malformed(String),
}

impl Fault {
    /// The error to report, or `None` for a short read. Bytes that fail to parse are checked
    /// for ClickHouse's exception text first: a failure after the first bytes were sent is
    /// reported that way, in the middle of the data.
    pub(super) fn into_error(self, column: Option<String>, buf: &[u8]) -> Option<ReadError> {
        if let Some(text) = server_exception(buf) {
            return Some(ReadError::Server(text));
        }
        match self {
            Fault::Short { .. } => None,
            Fault::Unsupported(data_type) => Some(ReadError::Unsupported {
                column: column.unwrap_or_default(),
                data_type,
            }),
            Fault::Malformed(message) => Some(ReadError::Malformed { column, message }),
        }
    }
}

/// ClickHouse's exception text in `buf`, if a failure after the first bytes put it there.
pub(crate) fn server_exception(buf: &[u8]) -> Option<String> {
    let marker = b"DB::Exception";
    let at = buf.windows(marker.len()).position(|w| w == marker)?;
    let start = buf[..at]
        .windows(6)
        .rposition(|w| w == b"Code: ")
        .unwrap_or(at);
    let text = String::from_utf8_lossy(&buf[start..]);
    Some(text.trim_end().chars().take(2000).collect())
}

pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| Fault::Malformed(format!("a length of {n} bytes is out of range")))?;
        let Some(bytes) = self.buf.get(self.pos..end) else {
            return Err(Fault::Short { needed: end });
        };
        self.pos = end;
        Ok(bytes)
    }

    /// `rows` values of `width` bytes each.
    pub(super) fn take_values(&mut self, width: usize, rows: usize) -> Result<&'a [u8], Fault> {
        let size = width
            .checked_mul(rows)
            .ok_or_else(|| Fault::Malformed(format!("{rows} rows is out of range")))?;
        self.take(size)
    }

    pub(super) fn skip(&mut self, n: usize) -> Result<(), Fault> {
        self.take(n).map(|_| ())
    }

    pub(super) fn varuint(&mut self) -> Result<u64, Fault> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(Fault::Short {
                    needed: self.pos + 1,
                });
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Fault::Malformed(
            "a variable-length integer runs past 10 bytes".into(),
        ))
    }

    pub(super) fn length(&mut self, what: &str) -> Result<usize, Fault> {
        let n = self.varuint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| Fault::Malformed(format!("{what} of {n} is out of range")))
    }

    pub(super) fn u64(&mut self) -> Result<u64, Fault> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    pub(super) fn text(&mut self, what: &str) -> Result<&'a str, Fault> {
        let len = self.length(what)?;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| Fault::Malformed(format!("{what} is not UTF-8")))
    }
}

pub(super) type ColumnFault = (Option<String>, Fault);
