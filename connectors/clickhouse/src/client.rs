//! The transport: the `clickhouse` crate over HTTP. Results come back in `ArrowStream`
//! from servers that have it ([`crate::arrow_stream`]) and in `Native` from older ones
//! (columnar on every version, decoded block by block by [`crate::native`]), read as they
//! arrive; `result_format` in `[clickhouse]` forces either. A result stream that is dropped before its end (the client
//! cancelled or went away) kills its query on the server, so ClickHouse stops working for
//! nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clickhouse::native::Block;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::runtime::Handle;
use tracing::{debug, warn};

use crate::arrow::BlockDecoder;
use crate::arrow_stream::{self, ArrowStreamBatches};
use crate::config::{ClickHouseConfig, ResultFormat};
use crate::error::{Error, Result};
use crate::native::{NativeBlocks, ReadError};

static QUERY_SEQ: AtomicU64 = AtomicU64::new(0);

/// A server version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        Some(Self {
            major: parts.next()?.parse().ok()?,
            minor: parts.next()?.parse().ok()?,
        })
    }

    /// Servers before 19.x run one JOIN per SELECT; deeper joins are nested as subqueries.
    pub fn single_join_per_select(&self) -> bool {
        self.major < 19
    }

    /// Servers from 23.x answer in `ArrowStream` with the settings Sluice sends beside it.
    pub fn has_arrow_stream(&self) -> bool {
        self.major >= 23
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A connection to one ClickHouse database. Cheap to clone.
#[derive(Clone)]
pub struct ClickHouseClient {
    config: Arc<ClickHouseConfig>,
    endpoint: Arc<str>,
    client: clickhouse::Client,
    version: ServerVersion,
    /// The format results are read in, chosen at connect.
    format: WireFormat,
}

/// A result format as sent in `FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Native,
    ArrowStream,
}

impl WireFormat {
    /// The format `setting` asks for on a server of `version`; `None` where it asks for
    /// `ArrowStream` of a server that lacks it.
    fn chosen(setting: ResultFormat, version: ServerVersion) -> Option<Self> {
        match setting {
            ResultFormat::Native => Some(Self::Native),
            ResultFormat::ArrowStream | ResultFormat::Auto if version.has_arrow_stream() => {
                Some(Self::ArrowStream)
            }
            ResultFormat::ArrowStream => None,
            ResultFormat::Auto => Some(Self::Native),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "Native",
            Self::ArrowStream => "ArrowStream",
        }
    }
}

impl std::fmt::Debug for ClickHouseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseClient")
            .field("endpoint", &self.endpoint)
            .field("version", &self.version)
            .field("format", &self.format)
            .finish()
    }
}

impl ClickHouseClient {
    /// Connects and reads the server version (within the connect timeout). The database
    /// need not exist yet (`sluice clickhouse init` creates it). The connections run on the
    /// runtime this is called on: call it on the one that reads the results.
    pub async fn connect(config: ClickHouseConfig) -> Result<Self> {
        let endpoint: Arc<str> = config.endpoint().into();
        let mut client = http_client()
            .with_url(config.url.trim_end_matches('/'))
            .with_user(&config.user)
            // The crate's row-type checks need formats 18.16 lacks; Sluice checks types itself.
            .with_validation(false);
        if let Some(p) = &config.password {
            client = client.with_password(p);
        }
        client = client.with_compression(if config.compression {
            clickhouse::Compression::Lz4
        } else {
            clickhouse::Compression::None
        });
        let mut this = Self {
            config: Arc::new(config),
            endpoint,
            client,
            // Read just below.
            version: ServerVersion { major: 0, minor: 0 },
            format: WireFormat::Native,
        };
        let text = this
            .text_with_timeout(
                // Not the reader: its database may not exist yet.
                this.client.clone(),
                "SELECT version()",
                "version check",
                this.config.connect_timeout(),
            )
            .await?;
        this.version = ServerVersion::parse(&text).ok_or_else(|| Error::Unexpected {
            endpoint: this.endpoint.to_string(),
            message: format!("unreadable server version {text:?}"),
        })?;
        this.format =
            WireFormat::chosen(this.config.result_format, this.version).ok_or_else(|| {
                Error::Unexpected {
                    endpoint: this.endpoint.to_string(),
                    message: format!(
                        "result_format = \"arrow_stream\" needs ClickHouse 23.x or later, and this \
                     server is {}: set result_format = \"auto\" or \"native\"",
                        this.version
                    ),
                }
            })?;
        debug!(endpoint = %this.endpoint, version = %this.version, format = this.format.name(),
            "connected to ClickHouse");
        Ok(this)
    }

    pub fn config(&self) -> &ClickHouseConfig {
        &self.config
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn version(&self) -> ServerVersion {
        self.version
    }

    /// The format results are read in.
    pub fn result_format(&self) -> WireFormat {
        self.format
    }

    fn request_err(&self, op: &'static str) -> impl Fn(clickhouse::error::Error) -> Error + '_ {
        move |source| Error::Request {
            endpoint: self.endpoint.to_string(),
            op,
            source,
        }
    }

    fn timeout_err(&self, op: &'static str, timeout: Duration) -> Error {
        Error::Timeout {
            endpoint: self.endpoint.to_string(),
            op,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The client for reads of Sluice's tables: the database, the server-side time limit,
    /// and standard SQL semantics for outer joins (18.16 fills unmatched rows with defaults
    /// unless `join_use_nulls` is on).
    ///
    /// On a cluster, a subquery over a `Distributed` table inside a query over another (a
    /// join of events with a rollup, an `IN` over events) runs once, on the server Sluice
    /// asked, and goes to the shards with the query (`GLOBAL`): ClickHouse refuses it
    /// otherwise, and reading it on each shard would see only that shard's rows.
    fn reader(&self) -> clickhouse::Client {
        let secs = self.config.query_timeout().as_secs_f64().ceil().max(1.0);
        let client = self
            .client
            .clone()
            .with_database(&self.config.database)
            .with_setting("max_execution_time", format!("{secs}"))
            .with_setting("join_use_nulls", "1")
            // Lets WHERE reach the primary key through the rollup views.
            .with_setting("enable_optimize_predicate_expression", "1");
        if self.config.cluster.is_some() {
            client.with_setting("distributed_product_mode", "global")
        } else {
            client
        }
    }

    /// Runs a statement that returns nothing (DDL), in the configured database unless
    /// `in_database` is false.
    pub async fn execute(&self, sql: &str, in_database: bool) -> Result<()> {
        let client = if in_database {
            self.client.clone().with_database(&self.config.database)
        } else {
            self.client.clone()
        };
        let timeout = self.config.query_timeout();
        match tokio::time::timeout(timeout, client.query(sql).execute()).await {
            Ok(r) => r.map_err(self.request_err("statement")),
            Err(_) => Err(self.timeout_err("statement", timeout)),
        }
    }

    /// Runs a maintenance statement (a rollup's backfill) in the database with no time limit:
    /// one stopped part way would leave the rollup partly filled.
    pub async fn execute_to_completion(&self, sql: &str) -> Result<()> {
        self.client
            .clone()
            .with_database(&self.config.database)
            .query(sql)
            .execute()
            .await
            .map_err(self.request_err("statement"))
    }

    /// A small result as tab-separated text (version, watermark, counts).
    pub async fn text(&self, sql: &str, op: &'static str) -> Result<String> {
        self.text_with_timeout(self.reader(), sql, op, self.config.query_timeout())
            .await
    }

    /// [`Self::text`] outside the database, which may not exist yet (`system` tables).
    pub async fn system_text(&self, sql: &str, op: &'static str) -> Result<String> {
        self.text_with_timeout(self.client.clone(), sql, op, self.config.query_timeout())
            .await
    }

    async fn text_with_timeout(
        &self,
        client: clickhouse::Client,
        sql: &str,
        op: &'static str,
        timeout: Duration,
    ) -> Result<String> {
        let fetch = async {
            let mut cursor = client
                .query(sql)
                .fetch_bytes("TabSeparated")
                .map_err(self.request_err(op))?;
            let bytes = cursor.collect().await.map_err(self.request_err(op))?;
            Ok::<_, Error>(String::from_utf8_lossy(&bytes).trim_end().to_string())
        };
        match tokio::time::timeout(timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_err(op, timeout)),
        }
    }

    /// Inserts one block into `table` (Native format). Loads are not queries: they get
    /// ten minutes per block whatever `query_timeout_ms` says.
    pub async fn insert(&self, table: &str, block: &Block) -> Result<()> {
        let timeout = Some(self.config.query_timeout().max(Duration::from_secs(600)));
        let client = self.client.clone().with_database(&self.config.database);
        let mut insert = client.insert_native(table).with_timeouts(timeout, timeout);
        insert
            .write(block)
            .await
            .map_err(self.request_err("insert"))?;
        insert.end().await.map_err(self.request_err("insert"))
    }

    /// Runs `sql` and streams its result as record batches of `schema` (matched by
    /// position). Call within a Tokio runtime: the query starts at once.
    pub fn query_arrow(&self, sql: String, schema: SchemaRef) -> SendableRecordBatchStream {
        let query_id = format!(
            "sluice-{}-{}",
            std::process::id(),
            QUERY_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        debug!(endpoint = %self.endpoint, %query_id, %sql, "ClickHouse query");
        let decoder = BlockDecoder::new(Arc::clone(&schema), Arc::clone(&self.endpoint));
        let guard = KillOnDrop {
            client: self.clone(),
            query_id: Some(query_id.clone()),
        };
        let (cursor, error) = match self.start_read(&sql, &query_id) {
            Ok(c) => (Some(c), None),
            Err(source) => (None, Some(self.request_err("query")(source))),
        };
        let deadline = tokio::time::Instant::now() + self.config.query_timeout();
        let state = State {
            client: self.clone(),
            cursor,
            error,
            results: match self.format {
                WireFormat::Native => Results::Native(NativeBlocks::default()),
                WireFormat::ArrowStream => Results::ArrowStream(ArrowStreamBatches::default()),
            },
            decoder,
            guard,
            deadline,
            retry: Some(sql),
        };
        // Reading and decoding run in their own task, a few batches ahead of the consumer,
        // so ClickHouse's transfer overlaps the gateway's encoding of what came before. If
        // the consumer goes away the task is aborted, and dropping its state kills the query.
        let mut builder = RecordBatchReceiverStream::builder(schema, 4);
        let tx = builder.tx();
        builder.spawn(async move {
            let mut state = state;
            loop {
                match state.next().await {
                    Ok(Some(batch)) => {
                        if tx.send(Ok(batch)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        break;
                    }
                }
            }
            Ok(())
        });
        builder.build()
    }

    fn start_read(
        &self,
        sql: &str,
        query_id: &str,
    ) -> clickhouse::error::Result<clickhouse::query::BytesCursor> {
        let mut query = self.reader().query(sql).with_setting("query_id", query_id);
        if self.format == WireFormat::ArrowStream {
            for (name, value) in arrow_stream::SETTINGS {
                query = query.with_setting(name, value);
            }
        }
        query.fetch_bytes(self.format.name())
    }

    /// A result that could not be read, as the error the user sees.
    fn read_err(&self, e: ReadError) -> Error {
        let endpoint = self.endpoint.to_string();
        match e {
            ReadError::Unsupported { column, data_type } => Error::UnsupportedType {
                endpoint,
                column,
                clickhouse_type: data_type,
            },
            ReadError::Malformed {
                column: Some(column),
                message,
            } => Error::Decode {
                endpoint,
                column,
                message,
            },
            ReadError::Malformed {
                column: None,
                message,
            } => Error::Unexpected {
                endpoint,
                message: format!("unreadable {} result: {message}", self.format.name()),
            },
            ReadError::Server(text) => Error::Request {
                endpoint,
                op: "query",
                source: clickhouse::error::Error::BadResponse(text),
            },
        }
    }
}

/// A client over the crate's default HTTP settings plus `TCP_NODELAY`. With Nagle's
/// algorithm on, a request's body waits for the server to acknowledge its headers, which
/// ClickHouse delays: 4 ms per query on loopback (a count over cold events took 14.2 ms
/// through Sluice against 3.6 ms for the same SQL from Python's HTTP client).
///
/// Its connections run on the runtime the client is made on (see [`SpawnOn`]).
fn http_client() -> clickhouse::Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let http = hyper_util::client::legacy::Client::builder(SpawnOn(Handle::current()))
        // Below ClickHouse's own keep-alive timeout (3 s), as the crate does.
        .pool_idle_timeout(Duration::from_secs(2))
        .build(connector);
    clickhouse::Client::with_http_client(http)
}

/// Spawns the HTTP connections' tasks on one runtime, whichever runtime a request starts
/// them from. A connection's task hands the body to its reader one HTTP chunk at a time,
/// and ClickHouse 18.16 sends 4 KiB chunks: with the connection on the gRPC runtime (it
/// was opened while planning) and its reader on the query runtime, every chunk woke a
/// thread of the other runtime. A bulk read of 685,499 rows took 17,000 such wake-ups
/// and 0.7 s of CPU; with both on one runtime, a few hundred and 0.3 s.
#[derive(Clone)]
struct SpawnOn(Handle);

impl<F> hyper::rt::Executor<F> for SpawnOn
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

struct State {
    client: ClickHouseClient,
    /// The response, until its last byte has arrived.
    cursor: Option<clickhouse::query::BytesCursor>,
    error: Option<Error>,
    results: Results,
    decoder: BlockDecoder,
    guard: KillOnDrop,
    deadline: tokio::time::Instant,
    /// The statement, until its first bytes arrive: a read that failed in the network
    /// before that is sent once more (a kept-alive connection the server closed just as
    /// it was reused fails this way, and a SELECT is safe to repeat).
    retry: Option<String>,
}

impl State {
    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(e) = self.error.take() {
            self.guard.query_id = None;
            return Err(e);
        }
        loop {
            if let Some(batch) = self.buffered()? {
                return Ok(Some(batch));
            }
            if self.cursor.is_none() {
                self.guard.query_id = None;
                return Ok(None);
            }
            let cursor = self.cursor.as_mut().expect("checked above");
            match tokio::time::timeout_at(self.deadline, cursor.next()).await {
                Ok(Ok(Some(chunk))) => {
                    self.retry = None;
                    let pushed = match &mut self.results {
                        Results::Native(blocks) => {
                            blocks.push(&chunk);
                            Ok(())
                        }
                        Results::ArrowStream(batches) => batches.push(chunk),
                    };
                    pushed.map_err(|e| self.client.read_err(e))?;
                }
                Ok(Ok(None)) => self.cursor = None,
                Ok(Err(clickhouse::error::Error::Network(source))) if self.retry.is_some() => {
                    let sql = self.retry.take().expect("checked by the guard");
                    let first = self.guard.query_id.take().unwrap_or_default();
                    let again = format!("{first}-retry");
                    warn!(endpoint = %self.client.endpoint, query_id = %first, error = %source,
                        "ClickHouse read failed before its first bytes; sending it again");
                    self.guard.query_id = Some(again.clone());
                    match self.client.start_read(&sql, &again) {
                        Ok(c) => *cursor = c,
                        Err(source) => {
                            self.cursor = None;
                            self.guard.query_id = None;
                            return Err(self.client.request_err("query")(source));
                        }
                    }
                }
                Ok(Err(source)) => {
                    self.cursor = None;
                    return Err(Error::Request {
                        endpoint: self.client.endpoint.to_string(),
                        op: "query",
                        source,
                    });
                }
                // Past the time limit: the guard kills the query when the stream goes.
                Err(_) => {
                    self.cursor = None;
                    return Err(self
                        .client
                        .timeout_err("query", self.client.config.query_timeout()));
                }
            }
        }
    }
}

/// A result's bytes so far, in the format it is read in.
enum Results {
    Native(NativeBlocks),
    ArrowStream(ArrowStreamBatches),
}

impl State {
    /// The next batch whole in what has arrived (after the last byte: in what is left).
    /// Empty blocks and batches (a header, a filtered-out block) carry nothing.
    fn buffered(&mut self) -> Result<Option<RecordBatch>> {
        let ended = self.cursor.is_none();
        loop {
            let read = match &mut self.results {
                Results::Native(blocks) => {
                    let block = if ended {
                        blocks.finish()
                    } else {
                        blocks.next_block()
                    };
                    match block.map_err(|e| self.client.read_err(e))? {
                        Some(b) if b.rows == 0 => continue,
                        Some(b) => Some(self.decoder.decode(b)?),
                        None => None,
                    }
                }
                Results::ArrowStream(batches) => match batches.next_batch() {
                    Some(b) if b.num_rows() == 0 => continue,
                    Some(b) => Some(self.decoder.decode_arrow(b)?),
                    None if ended => {
                        let finished = batches.finish();
                        finished.map_err(|e| self.client.read_err(e))?;
                        None
                    }
                    None => None,
                },
            };
            return Ok(read);
        }
    }
}

/// Kills the query on the server if its result was not read to the end.
struct KillOnDrop {
    client: ClickHouseClient,
    query_id: Option<String>,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.query_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        runtime.spawn(async move {
            let sql = format!("KILL QUERY WHERE query_id = '{id}' ASYNC");
            match client.execute(&sql, false).await {
                Ok(()) => debug!(query_id = %id, "killed an abandoned ClickHouse query"),
                Err(e) => warn!(query_id = %id, error = %e, "could not kill an abandoned ClickHouse query"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_format_follows_the_version_unless_forced() {
        let v18 = ServerVersion {
            major: 18,
            minor: 16,
        };
        let v26 = ServerVersion {
            major: 26,
            minor: 9,
        };
        let chosen = WireFormat::chosen;
        assert_eq!(chosen(ResultFormat::Auto, v18), Some(WireFormat::Native));
        assert_eq!(
            chosen(ResultFormat::Auto, v26),
            Some(WireFormat::ArrowStream)
        );
        assert_eq!(chosen(ResultFormat::Native, v26), Some(WireFormat::Native));
        assert_eq!(
            chosen(ResultFormat::ArrowStream, v26),
            Some(WireFormat::ArrowStream)
        );
        assert_eq!(chosen(ResultFormat::ArrowStream, v18), None);
    }

    /// A connection started from another runtime (the gRPC one, while planning) still runs
    /// on the runtime the client was made on, beside the reads of its results.
    #[test]
    fn connections_run_on_the_runtime_the_client_was_made_on() {
        let queries = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("made-on")
            .build()
            .unwrap();
        let spawn = queries.block_on(async { SpawnOn(Handle::current()) });
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ran_on = other.block_on(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            hyper::rt::Executor::execute(&spawn, async move {
                let _ = tx.send(std::thread::current().name().map(str::to_string));
            });
            rx.await.unwrap()
        });
        assert_eq!(ran_on.as_deref(), Some("made-on"));
    }
}
