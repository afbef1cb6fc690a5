use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
use datafusion::catalog::TableProvider;
use futures::{StreamExt, TryStreamExt};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use sluice_connector_api::{EventFilter, EventSource, StreamsBatchBuilder, Watermark};
use tracing::warn;

use crate::config::{RedisConfig, Target};
use crate::error::{Error, Result};
use crate::keys::{events_key, member, member_prefix, parse_member, users_key, watermark_key};
use crate::scan::RedisTable;

/// Listeners read in flight at once by a multi-listener scan.
const READ_CONCURRENCY: usize = 16;

/// Adds events to one listener's sorted set, skipping those already held: an event is
/// identified by (ts, track), whatever its ms_played. ARGV: ts, member, track prefix, ...
const ADD_EVENTS: &str = r#"
local added = 0
for i = 1, #ARGV, 3 do
  local ts = ARGV[i]
  local same = redis.call('ZRANGEBYSCORE', KEYS[1], ts, ts)
  local prefix = ARGV[i + 2]
  local seen = false
  for _, m in ipairs(same) do
    if string.sub(m, 1, #prefix) == prefix then seen = true break end
  end
  if not seen then
    redis.call('ZADD', KEYS[1], ts, ARGV[i + 1])
    added = added + 1
  end
end
return added
"#;

/// One server through a reconnecting multiplexed connection, or a Redis Cluster through
/// the cluster client (which routes each command by its key's slot and follows
/// redirections). Every command Sluice sends names one key, so both serve alike.
#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis hot store. Clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisHotStore {
    config: Arc<RedisConfig>,
    conn: Connection,
    add_events: Arc<redis::Script>,
    reads: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedisHotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHotStore")
            .field("endpoint", &self.config.endpoint())
            .field("key_prefix", &self.config.key_prefix)
            .finish()
    }
}

impl RedisHotStore {
    /// Connects (within the connect timeout) and checks the server answers.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let url = config.endpoint();
        let redis_err = |op| {
            let url = url.clone();
            move |source| Error::Redis { url, op, source }
        };
        let target = config.target().map_err(Error::Config)?;
        let connecting = async {
            match target {
                Target::Server(server) => {
                    let mut info = server
                        .into_connection_info()
                        .map_err(redis_err("parse the URL of"))?;
                    let mut settings = info.redis_settings().clone();
                    if let Some(user) = &config.username {
                        settings = settings.set_username(user);
                    }
                    if let Some(password) = &config.password {
                        settings = settings.set_password(password);
                    }
                    // Small request after small request: without TCP_NODELAY one can wait
                    // for the server's delayed ACK of the last (as ClickHouse reads did).
                    info = info
                        .set_redis_settings(settings)
                        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
                    let client = redis::Client::open(info).map_err(redis_err("open"))?;
                    let conn = client
                        .get_connection_manager()
                        .await
                        .map_err(redis_err("connect"))?;
                    Ok::<_, Error>(Connection::Server(conn))
                }
                Target::Cluster(nodes) => {
                    let mut builder = redis::cluster::ClusterClient::builder(nodes.to_vec())
                        .tcp_settings(TcpSettings::default().set_nodelay(true))
                        .connection_timeout(config.connect_timeout())
                        .response_timeout(config.command_timeout());
                    if let Some(user) = &config.username {
                        builder = builder.username(user);
                    }
                    if let Some(password) = &config.password {
                        builder = builder.password(password);
                    }
                    let client = builder.build().map_err(redis_err("open cluster"))?;
                    let conn = client
                        .get_async_connection()
                        .await
                        .map_err(redis_err("connect to cluster"))?;
                    Ok(Connection::Cluster(conn))
                }
            }
        };
        let conn = tokio::time::timeout(config.connect_timeout(), connecting)
            .await
            .map_err(|_| Error::Timeout {
                url: url.clone(),
                op: "connect",
                timeout_ms: config.connect_timeout_ms,
            })??;
        let store = Self {
            config: Arc::new(config),
            conn,
            add_events: Arc::new(redis::Script::new(ADD_EVENTS)),
            reads: Arc::new(AtomicU64::new(0)),
        };
        let _: String = store
            .run("PING", |mut c| async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await?;
        Ok(store)
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Number of listener slices read since start (one sorted-set range each).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Runs one Redis operation with the command timeout, naming it in errors.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.config.command_timeout(), f(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(Error::Redis {
                url: self.config.endpoint(),
                op,
                source,
            }),
            Err(_) => Err(Error::Timeout {
                url: self.config.endpoint(),
                op,
                timeout_ms: self.config.command_timeout_ms,
            }),
        }
    }

    /// Adds events (a batch with the `streams` schema); returns how many were new.
    pub async fn append(&self, batch: &RecordBatch) -> Result<u64> {
        if batch.schema().fields() != sluice_catalog::streams_schema().fields() {
            return Err(Error::Batch(format!(
                "expected the streams schema, got {:?}",
                batch.schema()
            )));
        }
        let users = batch.column(0).as_string::<i32>();
        let tracks = batch.column(1).as_string::<i32>();
        let ts = batch.column(2).as_primitive::<TimestampMillisecondType>();
        let played = batch.column(3).as_primitive::<Int64Type>();
        let mut per_user: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for i in 0..batch.num_rows() {
            if users.is_null(i) || tracks.is_null(i) || ts.is_null(i) || played.is_null(i) {
                return Err(Error::Batch(format!("row {i} has a null; no column may")));
            }
            let args = per_user.entry(users.value(i)).or_default();
            args.push(ts.value(i).to_string());
            args.push(member(ts.value(i), tracks.value(i), played.value(i)));
            args.push(member_prefix(ts.value(i), tracks.value(i)));
        }
        let prefix = &self.config.key_prefix;
        let user_list: Vec<String> = per_user.keys().map(|u| u.to_string()).collect();
        let users_key = users_key(prefix);
        let _: i64 = self
            .run("SADD users", |mut c| async move {
                redis::cmd("SADD")
                    .arg(&users_key)
                    .arg(&user_list)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut added = 0u64;
        for (user, args) in per_user {
            let key = events_key(prefix, user);
            // Bounded script calls: long ones would block the server for everyone.
            for chunk in args.chunks(3 * 1000) {
                let script = Arc::clone(&self.add_events);
                let key = key.clone();
                let n: u64 = self
                    .run("add events", |mut c| async move {
                        let mut invocation = script.key(&key);
                        for a in chunk {
                            invocation.arg(a);
                        }
                        invocation.invoke_async(&mut c).await
                    })
                    .await?;
                added += n;
            }
        }
        Ok(added)
    }

    /// Removes events older than `before_ms` (the loader passes `W - grace`).
    pub async fn trim(&self, before_ms: i64) -> Result<u64> {
        let mut removed = 0;
        for user in self.users().await? {
            let key = events_key(&self.config.key_prefix, &user);
            let n: u64 = self
                .run("trim", |mut c| async move {
                    redis::cmd("ZREMRANGEBYSCORE")
                        .arg(&key)
                        .arg("-inf")
                        .arg(format!("({before_ms}"))
                        .query_async(&mut c)
                        .await
                })
                .await?;
            removed += n;
        }
        Ok(removed)
    }

    /// The listeners that have events here.
    pub async fn users(&self) -> Result<Vec<String>> {
        let key = users_key(&self.config.key_prefix);
        let mut users: Vec<String> = self
            .run("SMEMBERS users", |mut c| async move {
                redis::cmd("SMEMBERS").arg(&key).query_async(&mut c).await
            })
            .await?;
        users.sort_unstable();
        Ok(users)
    }

    /// Publishes `W`. The loader calls it only after the cold store acknowledged the
    /// events before `W`.
    pub async fn set_watermark(&self, w_ms: i64) -> Result<()> {
        let key = watermark_key(&self.config.key_prefix);
        self.run("SET watermark", |mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(w_ms)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// `W`, if published.
    pub async fn watermark(&self) -> Result<Option<i64>> {
        let key = watermark_key(&self.config.key_prefix);
        self.run("GET watermark", |mut c| async move {
            redis::cmd("GET").arg(&key).query_async(&mut c).await
        })
        .await
    }

    /// One listener's events in `[start, end)`, as (ts, member) pairs in time order.
    async fn read_user(&self, user: &str, filter: &EventFilter) -> Result<Vec<(String, f64)>> {
        let key = events_key(&self.config.key_prefix, user);
        let lo = filter
            .time
            .start_ms
            .map_or("-inf".to_string(), |s| s.to_string());
        let hi = filter
            .time
            .end_ms
            .map_or("+inf".to_string(), |e| format!("({e}"));
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.run("read events", |mut c| async move {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(lo)
                .arg(hi)
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// The events matching `filter`, as batches with the `streams` schema, listeners in
    /// order and each in time order.
    pub(crate) async fn read(&self, filter: &EventFilter) -> Result<Vec<RecordBatch>> {
        let users: Vec<String> = match &filter.users {
            Some(u) => u.iter().cloned().collect(),
            None => self.users().await?,
        };
        let slices: Vec<(String, Vec<(String, f64)>)> = futures::stream::iter(users)
            .map(|user| async move {
                let events = self.read_user(&user, filter).await?;
                Ok::<_, Error>((user, events))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = StreamsBatchBuilder::new();
        for (user, events) in &slices {
            for (m, score) in events {
                let (track, ms) = parse_member(m).ok_or_else(|| Error::Corrupt {
                    key: events_key(&self.config.key_prefix, user),
                    member: m.clone(),
                })?;
                out.push(user, track, *score as i64, ms)
                    .map_err(|e| Error::Batch(e.to_string()))?;
            }
        }
        out.finish().map_err(|e| Error::Batch(e.to_string()))
    }
}

#[async_trait]
impl EventSource for RedisHotStore {
    fn name(&self) -> &str {
        "redis"
    }

    fn table(&self) -> Arc<dyn TableProvider> {
        Arc::new(RedisTable::new(self.clone()))
    }

    async fn append(&self, batch: &RecordBatch) -> datafusion::error::Result<u64> {
        Ok(RedisHotStore::append(self, batch).await?)
    }
}

/// How long a read of `W` is reused.
const WATERMARK_CACHE: Duration = Duration::from_secs(1);

/// `W` as published in Redis by the loader, read at most once a second. When Redis cannot
/// be reached, the last value read is used: `W` only moves forward, and a query planned with
/// an older `W` is still exact (the hot store keeps events for the grace period), so queries
/// that need only the cold store keep working while Redis is down.
#[derive(Debug, Clone)]
pub struct RedisWatermark {
    store: RedisHotStore,
    last: Arc<Mutex<Option<(i64, Instant)>>>,
}

impl RedisWatermark {
    pub fn new(store: RedisHotStore) -> Self {
        Self {
            store,
            last: Arc::new(Mutex::new(None)),
        }
    }
}

#[async_trait]
impl Watermark for RedisWatermark {
    async fn current_ms(&self) -> datafusion::error::Result<i64> {
        let cached = *self.last.lock().expect("watermark lock");
        if let Some((w, at)) = cached
            && at.elapsed() < WATERMARK_CACHE
        {
            return Ok(w);
        }
        match self.store.watermark().await {
            Ok(Some(w)) => {
                *self.last.lock().expect("watermark lock") = Some((w, Instant::now()));
                Ok(w)
            }
            Ok(None) => Err(crate::Error::NoWatermark {
                key: watermark_key(&self.store.config.key_prefix),
            }
            .into()),
            Err(e) => match cached {
                Some((w, _)) => {
                    warn!(error = %e, watermark_ms = w, "Redis unreachable; using the last watermark read");
                    Ok(w)
                }
                None => Err(e.into()),
            },
        }
    }
}
