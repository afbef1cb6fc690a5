use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clickhouse::native::builder::BlockBuilder;
use clickhouse::native::encode::Encode;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Int64Type, Schema, SchemaRef, TimestampMillisecondType,
};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::{Result as DfResult, exec_datafusion_err};
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{RemoteTableRef, SQLFederationProvider, SQLTableSource};
use sluice_catalog::{ALBUMS, ARTISTS, RollupDef, TRACKS, timestamp_type};
use sluice_connector_api::{EventSource, Watermark};
use tracing::{info, warn};

use crate::client::ClickHouseClient;
use crate::cluster::Shards;
use crate::config::ClickHouseConfig;
use crate::error::{Error, Result};
use crate::executor::ClickHouseExecutor;
use crate::schema::{
    Layout, STREAMS_TABLE, WATERMARK_TABLE, backfill_statements, create_statements, quote,
};

/// The catalog tables ClickHouse joins with itself. Not `albums`: it keeps `release_date` as
/// days since 1970 (18.16's `Date` starts in 1970, and albums were released before).
pub const CATALOG_COPY: &[&str] = &[TRACKS, ARTISTS];

/// The catalog tables ClickHouse holds, loaded by `sluice load` and read by the gateway at
/// start: with ClickHouse configured, the catalog comes from there and nowhere else.
pub const CATALOG_TABLES: &[&str] = &[TRACKS, ARTISTS, ALBUMS];

/// The cold store in ClickHouse: the raw `streams` table as the cold branch, the rollups,
/// the catalog copy, and the watermark the loader records. Cheap to clone.
#[derive(Clone)]
pub struct ClickHouseColdStore {
    client: ClickHouseClient,
    /// With `[clickhouse] cluster`: every shard.
    shards: Option<Arc<Shards>>,
    provider: Arc<SQLFederationProvider>,
    streams: Arc<dyn TableProvider>,
}

impl std::fmt::Debug for ClickHouseColdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseColdStore")
            .field("endpoint", &self.client.endpoint())
            .field("version", &self.client.version())
            .finish()
    }
}

/// The remote `streams` table as DataFusion sees it: `timestamp_ms` holds milliseconds, which
/// is how every time travels to and from ClickHouse ([`crate::dialect`]).
fn remote_streams_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("track_uri", DataType::Utf8, false),
        Field::new("timestamp_ms", timestamp_type(), false),
        Field::new("ms_played", DataType::Int64, false),
    ]))
}

impl ClickHouseColdStore {
    /// Connects and checks the server answers (with a cluster, every shard's, and that they
    /// make up the cluster). The tables are declared, not inspected: `sluice clickhouse init`
    /// creates exactly these.
    pub async fn connect(config: ClickHouseConfig) -> Result<Self> {
        let client = ClickHouseClient::connect(config).await?;
        let shards = match &client.config().cluster {
            Some(_) => Some(Arc::new(Shards::connect(&client, client.config()).await?)),
            None if !client.config().shards.is_empty() => {
                return Err(Error::Unexpected {
                    endpoint: client.endpoint().to_string(),
                    message: "`shards` is set without `cluster`: name the `remote_servers` \
                              cluster they make up"
                        .into(),
                });
            }
            None => None,
        };
        let provider =
            ClickHouseExecutor::new(client.clone(), shards.clone()).federation_provider();
        let streams = table(&provider, STREAMS_TABLE, remote_streams_schema());
        Ok(Self {
            client,
            shards,
            provider,
            streams,
        })
    }

    /// How the tables lie: on this server, or sharded over the cluster.
    pub fn layout(&self) -> Layout<'_> {
        match &self.shards {
            Some(shards) => Layout::Sharded {
                cluster: shards.cluster(),
            },
            None => Layout::Single,
        }
    }

    /// Each shard's server, in shard order (none without a cluster).
    pub fn shard_endpoints(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| s.clients())
            .map(|c| c.endpoint().to_string())
            .collect()
    }

    /// The servers that hold a copy of the schema and the catalog: every shard's, and the
    /// one queries go through (if it is none of them); or the one server.
    fn servers(&self) -> Vec<&ClickHouseClient> {
        let Some(shards) = &self.shards else {
            return vec![&self.client];
        };
        let mut servers: Vec<&ClickHouseClient> = shards.clients().iter().collect();
        let url = |c: &ClickHouseClient| c.config().url.trim_end_matches('/').to_string();
        if !servers.iter().any(|s| url(s) == url(&self.client)) {
            servers.push(&self.client);
        }
        servers
    }

    pub fn client(&self) -> &ClickHouseClient {
        &self.client
    }

    /// The tables of `rollups` (what ClickHouse keeps for each: [`crate::create_statements`]).
    pub fn rollup_tables(
        &self,
        rollups: &'static [RollupDef],
    ) -> Vec<(&'static RollupDef, Arc<dyn TableProvider>)> {
        rollups
            .iter()
            .map(|r| (r, table(&self.provider, r.table, r.table_def().schema())))
            .collect()
    }

    /// The catalog copy in ClickHouse (`tracks`, `artists`; see [`CATALOG_COPY`]), for joins
    /// ClickHouse runs itself.
    pub fn entity_tables(&self) -> Vec<(String, Arc<dyn TableProvider>)> {
        self.tables(CATALOG_COPY.iter().copied())
    }

    /// ClickHouse tables named like the logical tables they hold, with their schemas.
    fn tables<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
    ) -> Vec<(String, Arc<dyn TableProvider>)> {
        names
            .map(|name| {
                let schema = sluice_catalog::table(name).expect("declared").schema();
                (name.to_string(), table(&self.provider, name, schema))
            })
            .collect()
    }

    /// Creates the database and every table and view, with those of `rollups`, if missing,
    /// then fills any rollup that is empty while events are held (a database loaded before
    /// that rollup existed). Run it while nothing loads.
    pub async fn init(&self, rollups: &[RollupDef]) -> Result<()> {
        for rollup in rollups {
            rollup.check()?;
        }
        let database = &self.client.config().database;
        let layout = self.layout();
        let servers = self.servers();
        for server in &servers {
            for sql in create_statements(database, rollups, layout) {
                server.execute(&sql, false).await?;
            }
        }
        // Each server fills its rollups from its own events.
        let streams = layout.part(STREAMS_TABLE);
        for server in servers {
            let events = server
                .text(&format!("SELECT count() FROM {streams}"), "count events")
                .await?;
            if events.trim() == "0" {
                continue;
            }
            for (state, sql) in backfill_statements(database, rollups, layout) {
                let held = server
                    .text(&format!("SELECT count() FROM {state}"), "count rollup rows")
                    .await?;
                if held.trim() == "0" {
                    info!(rollup = %state, events, server = server.endpoint(),
                        "filling a new rollup from the events held");
                    server.execute_to_completion(&sql).await?;
                }
            }
        }
        Ok(())
    }

    /// Events held, and the latest event time (ms), in the raw table.
    pub async fn event_count(&self) -> Result<(u64, Option<i64>)> {
        let text = self
            .client
            .text(
                &format!("SELECT count(), max(timestamp_ms) FROM {STREAMS_TABLE}"),
                "count events",
            )
            .await?;
        let mut parts = text.split('\t');
        let count = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let max = parts
            .next()
            .and_then(|m| m.parse().ok())
            .filter(|_| count > 0);
        Ok((count, max))
    }

    /// Inserts events (a batch with the `streams` schema) into the raw table; the rollups
    /// follow through their materialized views. On a cluster each listener's events go
    /// straight to its shard's `streams_local`, placed as the `Distributed` tables place
    /// them: 18.16 fails an insert through `Distributed` whose local part feeds a
    /// materialized view with a join ("There is no query", Code 393), and one hop is less.
    pub async fn insert_events(&self, batch: &RecordBatch) -> Result<()> {
        let Some(shards) = &self.shards else {
            let block = self.events_block(batch)?;
            return self.client.insert(STREAMS_TABLE, &block).await;
        };
        let users = batch
            .column_by_name("user_id")
            .and_then(|c| cast(c, &DataType::Utf8).ok())
            .ok_or_else(|| Error::Unexpected {
                endpoint: self.client.endpoint().to_string(),
                message: "events without a user_id column".into(),
            })?;
        let shard_of_row: Vec<usize> = strings(&users).map(|u| shards.shard_of(u)).collect();
        for (shard, client) in shards.clients().iter().enumerate() {
            let mine = BooleanArray::from_iter(shard_of_row.iter().map(|s| Some(*s == shard)));
            let part = filter_record_batch(batch, &mine).map_err(|e| Error::Unexpected {
                endpoint: client.endpoint().to_string(),
                message: e.to_string(),
            })?;
            if part.num_rows() > 0 {
                let block = self.events_block(&part)?;
                client
                    .insert(&self.layout().part(STREAMS_TABLE), &block)
                    .await?;
            }
        }
        Ok(())
    }

    fn events_block(&self, batch: &RecordBatch) -> Result<clickhouse::native::Block> {
        let bad = |message: String| Error::Unexpected {
            endpoint: self.client.endpoint().to_string(),
            message,
        };
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| bad(format!("events without a {name} column")))
        };
        let users = cast(column("user_id")?, &DataType::Utf8).map_err(|e| bad(e.to_string()))?;
        let tracks = cast(column("track_uri")?, &DataType::Utf8).map_err(|e| bad(e.to_string()))?;
        let ts = column("ts")?
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| bad("ts is not a millisecond timestamp".into()))?;
        let played =
            cast(column("ms_played")?, &DataType::Int64).map_err(|e| bad(e.to_string()))?;
        let played = played.as_primitive::<Int64Type>();
        let ts_ms = ts
            .values()
            .iter()
            .map(|&v| u64::try_from(v).map_err(|_| bad(format!("event time {v} is before 1970"))))
            .collect::<Result<Vec<u64>>>()?;
        let played = played
            .values()
            .iter()
            .map(|&v| u32::try_from(v).map_err(|_| bad(format!("ms_played {v} out of range"))))
            .collect::<Result<Vec<u32>>>()?;
        let mut block = BlockBuilder::new();
        add_column(&mut block, "user_id", strings(&users)).map_err(bad)?;
        add_column(&mut block, "track_uri", strings(&tracks)).map_err(bad)?;
        add_column(&mut block, "timestamp_ms", ts_ms).map_err(bad)?;
        add_column(&mut block, "ms_played", played).map_err(bad)?;
        block.build().map_err(|e| bad(e.to_string()))
    }

    /// Replaces the catalog copy `name` with `batches` (the dataset's entity table), on
    /// every server that holds one (each shard joins its events with its own). Refused,
    /// before anything is changed, if a key repeats: the rollups by artist and genre join
    /// every event with its key's row, so a repeated key would count its plays twice.
    pub async fn replace_entities(&self, name: &str, batches: &[RecordBatch]) -> Result<()> {
        if let Some(key) = repeated_key(name, batches) {
            return Err(Error::DuplicateKey {
                endpoint: self.client.endpoint().to_string(),
                table: name.to_string(),
                key,
            });
        }
        for server in self.servers() {
            replace_entities_on(server, name, batches).await?;
        }
        Ok(())
    }

    /// The catalog as ClickHouse holds it ([`CATALOG_TABLES`]), read whole into memory, where
    /// the gateway serves it. Refused if a table is empty (nothing was loaded: Sluice never
    /// invents a catalog) or a key repeats.
    pub async fn catalog_tables(&self) -> Result<Vec<(String, Arc<dyn TableProvider>)>> {
        use futures::TryStreamExt;
        let mut tables: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
        for name in CATALOG_TABLES {
            let schema = sluice_catalog::table(name).expect("declared").schema();
            let columns: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
            let sql = format!("SELECT {} FROM {name}", columns.join(", "));
            let batches: Vec<RecordBatch> = self
                .client
                .query_arrow(sql, Arc::clone(&schema))
                .try_collect()
                .await
                .map_err(|e| Error::Unexpected {
                    endpoint: self.client.endpoint().to_string(),
                    message: format!("reading the catalog table {name}: {e}"),
                })?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                return Err(Error::NoCatalog {
                    endpoint: self.client.endpoint().to_string(),
                    table: name.to_string(),
                });
            }
            if let Some(key) = repeated_key(name, &batches) {
                return Err(Error::DuplicateKey {
                    endpoint: self.client.endpoint().to_string(),
                    table: name.to_string(),
                    key,
                });
            }
            let table =
                MemTable::try_new(schema, vec![batches]).map_err(|e| Error::Unexpected {
                    endpoint: self.client.endpoint().to_string(),
                    message: format!("the catalog table {name}: {e}"),
                })?;
            tables.push((name.to_string(), Arc::new(table)));
        }
        Ok(tables)
    }

    /// Records `W`: every event before it is in ClickHouse. Call only after the inserts
    /// of those events were acknowledged. On a cluster it is recorded on the first shard
    /// and read across all of them: one `W` for the cluster, whichever server is asked.
    pub async fn publish_watermark(&self, w_ms: i64) -> Result<()> {
        let server = match &self.shards {
            Some(shards) => &shards.clients()[0],
            None => &self.client,
        };
        let table = self.layout().part(WATERMARK_TABLE);
        server
            .execute(
                &format!("INSERT INTO {table} (w_ms, published) VALUES ({w_ms}, now())"),
                true,
            )
            .await
    }

    /// The last `W` recorded, if any (through the `Distributed` table on a cluster).
    pub async fn watermark_ms(&self) -> Result<Option<i64>> {
        let text = self
            .client
            .text(
                &format!("SELECT max(w_ms), count() FROM {WATERMARK_TABLE}"),
                "read watermark",
            )
            .await?;
        let mut parts = text.split('\t');
        let w = parts.next().and_then(|w| w.parse::<i64>().ok());
        let n = parts
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(w.filter(|_| n > 0))
    }
}

/// [`ClickHouseColdStore::replace_entities`] on one server.
async fn replace_entities_on(
    client: &ClickHouseClient,
    name: &str,
    batches: &[RecordBatch],
) -> Result<()> {
    let bad = |message: String| Error::Unexpected {
        endpoint: client.endpoint().to_string(),
        message,
    };
    client
        .execute(&format!("TRUNCATE TABLE {name}"), true)
        .await?;
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let mut block = BlockBuilder::new();
        for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name().as_str();
            match field.data_type() {
                DataType::Utf8 => add_column(&mut block, name, strings(array)),
                DataType::Int64 => add_column(
                    &mut block,
                    name,
                    array.as_primitive::<Int64Type>().values().iter().copied(),
                ),
                DataType::Date32 => add_column(
                    &mut block,
                    name,
                    array.as_primitive::<Date32Type>().values().iter().copied(),
                ),
                other => {
                    return Err(bad(format!("{name}: cannot load {other} into ClickHouse")));
                }
            }
            .map_err(bad)?;
        }
        let block = block.build().map_err(|e| bad(e.to_string()))?;
        client.insert(name, &block).await?;
    }
    Ok(())
}

/// A value of `table`'s one-column primary key that `batches` hold more than once.
fn repeated_key(table: &str, batches: &[RecordBatch]) -> Option<String> {
    let def = sluice_catalog::table(table)?;
    let [key] = def.primary_key.as_slice() else {
        return None;
    };
    let mut seen = std::collections::HashSet::new();
    for batch in batches {
        let column = batch.column_by_name(key)?;
        let values = cast(column, &DataType::Utf8).ok()?;
        for value in values.as_string::<i32>().iter().flatten() {
            if !seen.insert(value.to_string()) {
                return Some(format!("{key} = {value:?}"));
            }
        }
    }
    None
}

/// The values of a string column (no nulls: the schema has none).
fn strings(a: &dyn Array) -> impl Iterator<Item = &str> {
    a.as_string::<i32>().iter().map(|v| v.unwrap_or_default())
}

/// Adds a column of `values` to a block being built.
fn add_column<T: Encode>(
    block: &mut BlockBuilder,
    name: &str,
    values: impl IntoIterator<Item = T>,
) -> std::result::Result<(), String> {
    block
        .upsert_column::<T>(name)
        .map_err(|e| e.to_string())?
        .add_all(values)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn table(
    provider: &Arc<SQLFederationProvider>,
    name: &str,
    schema: SchemaRef,
) -> Arc<dyn TableProvider> {
    let source = SQLTableSource::new_with_schema(
        Arc::clone(provider),
        RemoteTableRef::from(datafusion::common::TableReference::bare(name)),
        schema,
    );
    Arc::new(FederatedTableProviderAdaptor::new(Arc::new(source)))
}

#[async_trait]
impl EventSource for ClickHouseColdStore {
    fn name(&self) -> &str {
        "clickhouse"
    }

    fn table(&self) -> Arc<dyn TableProvider> {
        Arc::clone(&self.streams)
    }

    fn renamed_columns(&self) -> &[(&'static str, &'static str)] {
        &[("ts", "timestamp_ms")]
    }
}

/// `W` as recorded in ClickHouse by the loader, read at most once per `ttl`. If ClickHouse
/// cannot be reached, the last value read stands (queries that need only the hot store keep
/// working); before any value was read, it is an error naming ClickHouse.
#[derive(Debug)]
pub struct ClickHouseWatermark {
    store: ClickHouseColdStore,
    ttl: Duration,
    last: Mutex<Option<(i64, Instant)>>,
}

impl ClickHouseWatermark {
    pub fn new(store: ClickHouseColdStore) -> Self {
        Self {
            store,
            ttl: Duration::from_secs(1),
            last: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Watermark for ClickHouseWatermark {
    async fn current_ms(&self) -> DfResult<i64> {
        let cached = *self.last.lock().expect("watermark lock");
        if let Some((w, at)) = cached
            && at.elapsed() < self.ttl
        {
            return Ok(w);
        }
        match self.store.watermark_ms().await {
            Ok(Some(w)) => {
                *self.last.lock().expect("watermark lock") = Some((w, Instant::now()));
                Ok(w)
            }
            Ok(None) => Err(exec_datafusion_err!(
                "ClickHouse at {} has no watermark yet: load it with `sluice load`",
                self.store.client.endpoint()
            )),
            Err(e) => match cached {
                Some((w, _)) => {
                    warn!(error = %e, "watermark not refreshed; using the last one read");
                    Ok(w)
                }
                None => Err(e.into()),
            },
        }
    }
}
