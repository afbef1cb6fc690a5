//! What a client carries between calls besides its session token: prepared-statement
//! handles and tickets, each self-contained and sealed (`sluice_auth::Sealer`), so that any
//! replica sharing `[server] replica_secret` answers the next call. A replica's own memory
//! (a plan made ahead, a query started for the ticket) only speeds up a call it serves
//! itself; elsewhere the statement is planned again from what the client brought.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use sluice_auth::{Identity, Principal, Purpose, Sealer};
use sluice_planner::SessionSettings;

use crate::error::{Error, Result};

/// How long a prepared statement's handle is accepted.
const HANDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// A prepared statement as its handle carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PreparedHandle {
    /// What the replica that prepared it keeps locally (the plan made ahead) is under this.
    pub(crate) id: Vec<u8>,
    pub(crate) who: Identity,
    pub(crate) sql: String,
    /// The parameters bound last, as an Arrow IPC stream of one row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
    /// How many times parameters were bound: the newer of a handle's and a replica's own
    /// binding wins (a client may keep sending the handle it had).
    #[serde(default)]
    pub(crate) binds: u64,
}

/// A query's results as its ticket asks for them: everything needed to run it again at the
/// same `W`, where the replica serving the DoGet did not start it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct QueryTicket {
    /// The started query waiting for this ticket, on the replica that issued it.
    pub(crate) id: Vec<u8>,
    pub(crate) who: Identity,
    pub(crate) sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    settings: BTreeMap<String, String>,
    pub(crate) watermark_ms: i64,
}

impl PreparedHandle {
    pub(crate) fn new(principal: &Principal, sql: String) -> Self {
        Self {
            id: rand::random::<[u8; 16]>().to_vec(),
            who: principal.identity(),
            sql,
            params: None,
            binds: 0,
        }
    }

    /// This statement with `params` bound, as the `binds`-th binding.
    pub(crate) fn bound(mut self, params: Option<&[ScalarValue]>, binds: u64) -> Result<Self> {
        self.params = params.map(encode_params).transpose()?;
        self.binds = binds;
        Ok(self)
    }

    pub(crate) fn params(&self) -> Result<Option<Vec<ScalarValue>>> {
        self.params.as_deref().map(decode_params).transpose()
    }

    pub(crate) fn seal(&self, sealer: &Sealer) -> Vec<u8> {
        seal(sealer, Purpose::PreparedStatement, HANDLE_TTL, self)
    }

    /// The handle `principal` sent; any other principal's (or a changed one) is unknown.
    pub(crate) fn open(sealer: &Sealer, handle: &[u8], principal: &Principal) -> Result<Self> {
        let handle: Self = open(sealer, Purpose::PreparedStatement, handle)
            .ok_or(Error::UnknownPreparedStatement)?;
        if !handle.who.is(principal) {
            return Err(Error::UnknownPreparedStatement);
        }
        Ok(handle)
    }
}

impl QueryTicket {
    pub(crate) fn new(
        id: Vec<u8>,
        principal: &Principal,
        sql: &str,
        params: Option<&[ScalarValue]>,
        settings: &SessionSettings,
        watermark_ms: i64,
    ) -> Result<Self> {
        Ok(Self {
            id,
            who: principal.identity(),
            sql: sql.to_string(),
            params: params.map(encode_params).transpose()?,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            watermark_ms,
        })
    }

    pub(crate) fn params(&self) -> Result<Option<Vec<ScalarValue>>> {
        self.params.as_deref().map(decode_params).transpose()
    }

    pub(crate) fn settings(&self) -> Result<SessionSettings> {
        let pairs = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        Ok(SessionSettings::from_pairs(pairs)?)
    }

    /// Sealed for `ttl`: a DoGet after that is refused, as the hot store keeps events from
    /// before a moved `W` only for a while.
    pub(crate) fn seal(&self, sealer: &Sealer, ttl: Duration) -> Vec<u8> {
        seal(sealer, Purpose::Ticket, ttl, self)
    }

    /// The ticket `principal` sent; another principal's (or a changed one) is unknown.
    pub(crate) fn open(sealer: &Sealer, ticket: &[u8], principal: &Principal) -> Result<Self> {
        let ticket = Self::open_any(sealer, ticket).ok_or(Error::UnknownTicket)?;
        if !ticket.who.is(principal) {
            return Err(Error::UnknownTicket);
        }
        Ok(ticket)
    }

    /// A ticket of any principal (to cancel it by: cancelling needs only the id).
    pub(crate) fn open_any(sealer: &Sealer, ticket: &[u8]) -> Option<Self> {
        open(sealer, Purpose::Ticket, ticket)
    }
}

fn seal(sealer: &Sealer, purpose: Purpose, ttl: Duration, value: &impl Serialize) -> Vec<u8> {
    let payload = serde_json::to_vec(value).expect("client state serializes");
    sealer.seal(purpose, ttl, &payload)
}

/// What `sealed` holds, or `None` if it is not (or no longer) valid. Expired and forged are
/// told apart by no caller: both mean "prepare (or run) it again".
fn open<T: for<'de> Deserialize<'de>>(
    sealer: &Sealer,
    purpose: Purpose,
    sealed: &[u8],
) -> Option<T> {
    let (payload, _) = sealer.open(purpose, sealed).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// One row of parameters as an Arrow IPC stream (base64): every Arrow type round-trips.
fn encode_params(params: &[ScalarValue]) -> Result<String> {
    let bad = |e: &dyn std::fmt::Display| Error::InvalidRequest(format!("parameters: {e}"));
    let columns: Vec<ArrayRef> = params
        .iter()
        .map(|v| v.to_array_of_size(1))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&e))?;
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(i.to_string(), c.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| bad(&e))?;
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &schema).map_err(|e| bad(&e))?;
    writer.write(&batch).map_err(|e| bad(&e))?;
    writer.finish().map_err(|e| bad(&e))?;
    drop(writer);
    Ok(STANDARD.encode(bytes))
}

fn decode_params(encoded: &str) -> Result<Vec<ScalarValue>> {
    let bad = |e: &dyn std::fmt::Display| Error::InvalidRequest(format!("parameters: {e}"));
    let bytes = STANDARD.decode(encoded).map_err(|e| bad(&e))?;
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| bad(&e))?;
    let batch = reader
        .next()
        .ok_or_else(|| bad(&"no row"))?
        .map_err(|e| bad(&e))?;
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&e))
}

#[cfg(test)]
mod tests {
    use sluice_auth::Role;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_handle_carries_its_statement_and_parameters_to_another_replica_for_its_principal() {
        let (a, b) = (
            Sealer::from_secret(SECRET).unwrap(),
            Sealer::from_secret(SECRET).unwrap(),
        );
        let alice = Principal::new("alice", Role::Listener, Some("u0001"));
        let bob = Principal::new("bob", Role::Listener, Some("u0002"));
        let params = vec![
            ScalarValue::Utf8(Some("Radiohead".into())),
            ScalarValue::Int64(Some(3)),
            ScalarValue::TimestampMillisecond(Some(1_560_000_000_000), Some("UTC".into())),
            ScalarValue::Null,
        ];
        let handle = PreparedHandle::new(&alice, "SELECT $1, $2, $3, $4".into())
            .bound(Some(&params), 2)
            .unwrap();
        let sealed = handle.seal(&a);
        let opened = PreparedHandle::open(&b, &sealed, &alice).unwrap();
        assert_eq!(opened, handle);
        assert_eq!(opened.params().unwrap(), Some(params));
        assert!(matches!(
            PreparedHandle::open(&b, &sealed, &bob),
            Err(Error::UnknownPreparedStatement)
        ));
        assert!(matches!(
            QueryTicket::open(&b, &sealed, &alice),
            Err(Error::UnknownTicket)
        ));
        assert!(matches!(
            PreparedHandle::open(&Sealer::random(), &sealed, &alice),
            Err(Error::UnknownPreparedStatement)
        ));
    }

    #[test]
    fn a_ticket_pins_settings_and_w() {
        let sealer = Sealer::from_secret(SECRET).unwrap();
        let alice = Principal::new("alice", Role::Listener, Some("u0001"));
        let mut settings = SessionSettings::default();
        settings.set("sluice.route", "raw").unwrap();
        let ticket =
            QueryTicket::new(vec![7; 16], &alice, "SELECT 1", None, &settings, 42).unwrap();
        let opened = QueryTicket::open(
            &sealer,
            &ticket.seal(&sealer, Duration::from_secs(30)),
            &alice,
        )
        .unwrap();
        assert_eq!(opened.watermark_ms, 42);
        assert_eq!(opened.settings().unwrap(), settings);
        assert_eq!(opened.params().unwrap(), None);
    }
}
