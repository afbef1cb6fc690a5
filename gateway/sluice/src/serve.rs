use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_auth::{AuthOptions, Authenticator, Limits, PrincipalConfig, Role};
use sluice_catalog::{Dataset, GenerateConfig};
use sluice_connector_api::{EventSource, Sources, Watermark};
use sluice_connector_clickhouse::{ClickHouseColdStore, ClickHouseConfig, ClickHouseWatermark};
use sluice_connector_embedded::{
    EmbeddedConfig, EmbeddedSources, MemoryHotStore, ParquetColdStore, entity_tables,
};
use sluice_connector_redis::{RedisConfig, RedisHotStore, RedisWatermark};
use sluice_flight::{Admission, AuditLog, SluiceFlightService};
use sluice_planner::{MemoryBudget, QueryEngine, QueryExecutor};
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

use crate::cli::ServeArgs;
use crate::config::{FileConfig, TlsSection};
use crate::generate::today;

const DEFAULT_LISTEN: &str = "127.0.0.1:32010";
const DEFAULT_MCP_PORT: u16 = 32011;
const DEMO_DIR: &str = "data/demo";

type BoxError = Box<dyn std::error::Error>;

/// The demo dataset of the embedded default: small enough to generate in seconds.
fn demo_config() -> GenerateConfig {
    GenerateConfig {
        users: 10,
        years: 10,
        seed: 42,
        end: today(),
        artists: 1000,
    }
}

/// Opens the dataset to serve: the one named, or the demo, generated when missing or stale.
fn dataset(named: Option<PathBuf>) -> Result<Dataset, BoxError> {
    if let Some(dir) = named {
        return Ok(Dataset::open(dir)?);
    }
    let dir = Path::new(DEMO_DIR);
    match Dataset::open(dir) {
        Ok(d) if d.manifest().end >= today() => return Ok(d),
        Ok(_) => eprintln!("demo data in {DEMO_DIR} is from an earlier day; regenerating it"),
        Err(_) => eprintln!("no demo data yet; generating it in {DEMO_DIR}"),
    }
    let manifest = sluice_catalog::generate(&demo_config(), dir)?;
    eprintln!(
        "generated {} events of {} listeners",
        manifest.events, manifest.users
    );
    Ok(Dataset::open(dir)?)
}

fn demo_principals(dataset: &Dataset) -> Vec<PrincipalConfig> {
    let mut principals: Vec<PrincipalConfig> = dataset
        .user_ids()
        .into_iter()
        .map(|u| PrincipalConfig {
            name: u.clone(),
            password: Some(u.clone()),
            password_hash: None,
            // The demo's MCP credential: `Authorization: Bearer <user name>`.
            token: Some(u.clone()),
            role: Role::Listener,
            user_id: Some(u),
            limits: Default::default(),
        })
        .collect();
    principals.push(PrincipalConfig {
        name: "analyst".into(),
        password: Some("analyst".into()),
        password_hash: None,
        token: Some("analyst".into()),
        role: Role::Analyst,
        user_id: None,
        limits: Default::default(),
    });
    principals.push(PrincipalConfig {
        name: "admin".into(),
        password: Some("admin".into()),
        password_hash: None,
        token: Some("admin".into()),
        role: Role::Admin,
        user_id: None,
        limits: Default::default(),
    });
    principals
}

/// Accepted connections with Nagle's algorithm off: answers are small writes (schema, a
/// batch, trailers), and waiting to coalesce them against the client's delayed ACKs costs
/// tens of milliseconds per query.
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        if let Err(e) = conn.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        Ok(conn)
    })
}

pub(crate) fn run(args: ServeArgs) -> Result<(), BoxError> {
    // The file, then SLUICE_<SECTION>__<KEY> variables, then flags (and their variables).
    let file = FileConfig::load(args.config.as_deref())?;
    let telemetry = crate::telemetry::init(Some(&file.telemetry))?;
    let chosen_listen = args.listen.or(file.listen);
    let listen: SocketAddr = match chosen_listen {
        Some(a) => a,
        None => DEFAULT_LISTEN.parse()?,
    };
    let hot_days = args.hot_days.or(file.embedded.hot_days).unwrap_or(7);
    let metrics_listen = args.metrics_listen.or(file.metrics_listen);
    let demo_logins = file.principal.is_empty();
    let limits = file
        .limits
        .over(Limits::default())
        .map_err(|e| format!("[limits]: {e}"))?;
    let options = AuthOptions {
        session_ttl: Duration::from_secs(file.auth.session_ttl_secs),
        jwt: file.auth.jwt.clone(),
        limits,
        replica_secret: file.server.replica_secret.clone(),
    };
    let flight_tls = tls_files(
        &args.tls_cert,
        &args.tls_key,
        file.tls.as_ref(),
        listen,
        "Flight SQL",
    )?;
    let tls = tls(flight_tls.as_ref())?;
    let mcp_caps = file.mcp.caps()?;
    let mcp_listen = match args.mcp_listen.or(file.mcp.listen) {
        Some(addr) => Some(addr),
        // The embedded default serves MCP beside Flight SQL, on loopback only: on 32011
        // beside the default 32010, else on a free port (the banner says which), so that
        // an address chosen for Flight SQL never fails for want of the port after it.
        None if demo_logins && listen.ip().is_loopback() => Some(SocketAddr::new(
            listen.ip(),
            if chosen_listen.is_some() {
                0
            } else {
                DEFAULT_MCP_PORT
            },
        )),
        None => None,
    };
    let mcp_allowed_hosts = file.mcp.allowed_hosts.clone();
    let mcp_tls = match mcp_listen {
        Some(addr) => tls_files(
            &args.tls_cert,
            &args.tls_key,
            file.tls.as_ref(),
            addr,
            "MCP",
        )?,
        None => None,
    };
    let server = &file.server;
    let grace = Duration::from_secs(server.shutdown_grace_secs);
    let data = args.data.or(file.data.clone());
    configured_sources(&file, data.as_deref(), demo_logins)?;
    if args.check {
        // Everything but the data and the sources: those need the network or the disk.
        if let Some(secret) = &options.replica_secret {
            sluice_auth::Sealer::from_secret(secret)?;
        }
        if !demo_logins {
            Authenticator::new(&file.principal, &options)?;
        }
        let data = match (&file.clickhouse, &data) {
            (Some(_), _) => "none (every event and the catalog from the configured sources)".into(),
            (None, Some(d)) => d.display().to_string(),
            (None, None) => format!("{DEMO_DIR} (the demo, generated when missing)"),
        };
        let settings = effective(
            &file,
            listen,
            metrics_listen,
            hot_days,
            tls.is_some(),
            &limits,
        );
        let mcp = match mcp_listen {
            Some(addr) => format!(
                "mcp.listen = {addr} ({}), rows {} by default, at most {}, at most {} bytes\n",
                if mcp_tls.is_some() {
                    "TLS"
                } else {
                    "plaintext"
                },
                mcp_caps.default_rows,
                mcp_caps.max_rows,
                mcp_caps.max_bytes
            ),
            None => "mcp.listen = none\n".to_string(),
        };
        print!("configuration ok\ndata = {data}\n{settings}{mcp}");
        return Ok(());
    }
    // With ClickHouse, every part of an answer comes from the configured sources: no
    // dataset folder is read, and no demo is generated beside them.
    let dataset = match file.clickhouse {
        Some(_) => None,
        None => {
            let opened = dataset(data)?;
            Some(match &file.embedded.rollups_dir {
                Some(dir) => opened.with_rollups_dir(dir.clone()),
                None => opened,
            })
        }
    };
    let principals = match &dataset {
        Some(dataset) if demo_logins => demo_principals(dataset),
        _ => file.principal.clone(),
    };
    let auth = Arc::new(Authenticator::new(&principals, &options)?);
    if !demo_logins {
        auth.warn_plain_passwords();
    }
    let audit = match &file.audit.file {
        Some(path) => AuditLog::with_file(path)
            .map_err(|e| format!("opening the audit file {}: {e}", path.display()))?,
        None => AuditLog::to_log(),
    };
    let admission = Admission::new(server.max_active_queries);
    let memory = MemoryBudget::new(mib(server.memory_pool_mb));
    let plan_cache_entries = server.plan_cache_entries;
    let start_at_prepare = server.start_at_prepare;

    let redis = file.redis;
    let clickhouse = file.clickhouse;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Query plans run on a runtime of their own, so that a heavy one never keeps the
    // gRPC side from answering logins, cancels and timeouts.
    let queries = tokio::runtime::Builder::new_multi_thread()
        .thread_name("sluice-query")
        .enable_all()
        .build()?;
    let executor = QueryExecutor::new(queries.handle().clone());
    let query_runtime = queries.handle().clone();
    let served = runtime.block_on(async move {
        // Opened on the query runtime, where plans read them: a connection's own task
        // (ClickHouse's HTTP, Redis's multiplexer) then wakes its reader on the same
        // threads rather than across runtimes for every chunk of a result.
        let opening = query_runtime.spawn({
            let dataset = dataset.clone();
            async move {
                open_sources(dataset.as_ref(), redis, clickhouse, hot_days)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        let (sources, hot_name) = opening
            .await
            .map_err(|e| format!("opening the sources: {e}"))??;
        let watermark = sources.watermark.current_ms().await.unwrap_or(i64::MIN);
        let engine = Arc::new(
            QueryEngine::new(sources)?
                .with_executor(executor)
                .with_memory_budget(memory)
                .with_plan_cache(plan_cache_entries),
        );
        let service =
            SluiceFlightService::new(engine, Arc::clone(&auth), audit, Arc::clone(&admission))
                .with_start_at_prepare(start_at_prepare);
        // Queries started for a ticket (or a prepare) that never came to fetch them give
        // their places back within a second of expiring, even when no statement follows.
        let sweeper = service.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                sweeper.drop_expired_tickets();
            }
        });

        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listening for Flight SQL on {listen}: {e}"))?;
        let local = listener.local_addr()?;
        let metrics = match metrics_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("listening for metrics on {addr}: {e}"))?;
                let local = l.local_addr()?;
                tokio::spawn(sluice_metrics::serve(l));
                Some(local)
            }
            None => None,
        };
        let mcp = match mcp_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("listening for MCP on {addr}: {e}"))?;
                let local = l.local_addr()?;
                // The tools call this gateway's own Flight SQL service, in-process.
                let tools = sluice_mcp::SluiceTools::new(
                    sluice_mcp::Gateway::new(service.clone().into_server()),
                    mcp_caps,
                    None,
                );
                let allowed_hosts = match mcp_allowed_hosts {
                    Some(hosts) => hosts,
                    None if local.ip().is_loopback() => {
                        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
                    }
                    None => vec![],
                };
                let options = sluice_mcp::HttpOptions {
                    tls: mcp_tls.clone(),
                    allowed_hosts,
                };
                tokio::spawn(sluice_mcp::serve_http(l, tools, Arc::clone(&auth), options)?);
                info!(address = %local, tls = mcp_tls.is_some(), "serving MCP");
                Some(local)
            }
            None => None,
        };
        let w = chrono::DateTime::from_timestamp_millis(watermark)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "(not published)".to_string());
        let serving = match &dataset {
            Some(d) => {
                let m = d.manifest();
                format!(
                    "{} ({} listeners, {} .. {})",
                    d.root().display(),
                    m.users,
                    m.start,
                    m.end
                )
            }
            None => "the events and catalog of the configured sources".to_string(),
        };
        // The banner goes to stdout, the address last: scripts read up to that line and may
        // close the pipe, which must not stop the server.
        let mut banner = format!(
            "Sluice {} serving {serving}, hot store {hot_name} from W = {w}\n",
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(dataset) = dataset.as_ref().filter(|_| demo_logins) {
            let users = dataset.user_ids();
            banner.push_str(&format!(
                "Demo logins: listeners {} .. {} (password = user name), analyst/analyst, admin/admin (ingest)\n",
                users.first().map(String::as_str).unwrap_or("-"),
                users.last().map(String::as_str).unwrap_or("-"),
            ));
        }
        if let Some(m) = metrics {
            banner.push_str(&format!("Metrics: http://{m}/metrics\n"));
        }
        if let Some(m) = mcp {
            let scheme = if mcp_tls.is_some() { "https" } else { "http" };
            let demo = if demo_logins {
                " (Authorization: Bearer <login name>)"
            } else {
                ""
            };
            banner.push_str(&format!("MCP: {scheme}://{m}/mcp{demo}\n"));
        }
        let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
        banner.push_str(&format!("Flight SQL: {scheme}://{local}\n"));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
        drop(out);
        info!(address = %local, tls = tls.is_some(), "serving Flight SQL");

        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(
            builder
                .add_service(service.into_server())
                .serve_with_incoming_shutdown(incoming(listener), async {
                    let _ = stopped.await;
                }),
        );
        sluice_metrics::set_ready(true);
        tokio::select! {
            ended = &mut server => return Ok(ended??),
            () = shutdown_signal() => {}
        }
        drain(&admission, grace).await;
        let _ = stop.send(());
        // Connections close once their last stream ends; an idle client's is closed by
        // the server's GOAWAY.
        match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(ended) => ended??,
            Err(_) => warn!("connections still open 5 s after the drain; exiting anyway"),
        }
        info!("stopped");
        Ok::<(), BoxError>(())
    });
    // Running plans (after the grace, if any) stop with the process.
    queries.shutdown_background();
    runtime.shutdown_background();
    drop(telemetry);
    served
}

/// MiB to bytes; 0 means no limit.
fn mib(mb: u64) -> Option<u64> {
    (mb > 0).then(|| mb.saturating_mul(1024 * 1024))
}

/// The settings in effect, for `serve --check`: no passwords, tokens or secrets.
fn effective(
    file: &FileConfig,
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    hot_days: u32,
    tls: bool,
    limits: &Limits,
) -> String {
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let mut out = format!(
        "listen = {listen} ({})\n\
         metrics_listen = {}\n\
         hot_days = {hot_days}\n\
         server.shutdown_grace_secs = {}\n\
         server.max_active_queries = {}\n\
         server.memory_pool_mb = {}\n\
         server.plan_cache_entries = {}\n\
         server.start_at_prepare = {}\n\
         server.replica_secret = {}\n\
         limits.max_concurrent_queries = {}\n\
         limits.query_timeout_secs = {}\n\
         limits.query_memory_mb = {}\n\
         limits.max_rows = {}\n\
         telemetry.otlp_endpoint = {}\n",
        if tls { "TLS" } else { "plaintext" },
        or_none(metrics_listen.map(|a| a.to_string())),
        file.server.shutdown_grace_secs,
        file.server.max_active_queries,
        file.server.memory_pool_mb,
        file.server.plan_cache_entries,
        file.server.start_at_prepare,
        if file.server.replica_secret.is_some() {
            "set (replicas sharing it answer each other's calls)"
        } else {
            "none (a random secret of this process)"
        },
        limits.max_concurrent_queries,
        or_none(limits.query_timeout.map(|d| d.as_secs().to_string())),
        or_none(
            limits
                .query_memory_bytes
                .map(|b| (b / (1024 * 1024)).to_string())
        ),
        or_none(limits.max_rows.map(|r| r.to_string())),
        or_none(file.telemetry.otlp_endpoint.clone()),
    );
    out.push_str(&match &file.clickhouse {
        Some(c) => format!(
            "clickhouse = {} as {} (password {}){}\n",
            c.endpoint(),
            c.user,
            if c.password.is_some() { "set" } else { "none" },
            match &c.cluster {
                Some(cluster) =>
                    format!(", sharded over cluster {cluster}: {}", c.shards.join(", ")),
                None => String::new(),
            }
        ),
        None => "clickhouse = none (the dataset's Parquet files)\n".into(),
    });
    out.push_str(&match &file.redis {
        Some(r) => format!(
            "redis = {} (password {})\n",
            r.endpoint(),
            if r.password.is_some() { "set" } else { "none" }
        ),
        None if file.clickhouse.is_some() => {
            "redis = none (ClickHouse holds every event; ingest kept in memory)\n".into()
        }
        None => "redis = none (the dataset's last days in memory)\n".into(),
    });
    out.push_str(&format!(
        "principals = {}\njwt = {}\n",
        if file.principal.is_empty() {
            "demo logins".to_string()
        } else {
            file.principal
                .iter()
                .map(|p| format!("{} ({})", p.name, p.role))
                .collect::<Vec<_>>()
                .join(", ")
        },
        file.auth
            .jwt
            .as_ref()
            .map_or("off".to_string(), |j| format!("{:?}", j.algorithm)),
    ));
    out
}

/// After the signal: readiness goes to 503 and new statements are refused, while running
/// queries get up to `grace` to finish.
async fn drain(admission: &Admission, grace: Duration) {
    admission.drain();
    sluice_metrics::set_ready(false);
    let running = admission.active();
    info!(
        running,
        grace_secs = grace.as_secs(),
        "draining: new queries are refused; running ones may finish"
    );
    // Settled: no query running, and the clients' follow-up calls (closing a prepared
    // statement or session) answered.
    let settled = admission.settled(Duration::from_millis(500));
    if tokio::time::timeout(grace, settled).await.is_err() {
        warn!(
            running = admission.active(),
            grace_secs = grace.as_secs(),
            "shutdown grace over; stopping the queries still running"
        );
    } else {
        info!("drained: no query running");
    }
}

/// The certificate and key (PEM) Flight SQL and MCP are served with on `listen`, from the
/// flags, else `[tls]`. Plaintext only when configured off (`[tls] enabled = false`), or
/// unconfigured on a loopback address, which nothing off this machine reaches (the demo,
/// the tests).
fn tls_files(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    section: Option<&TlsSection>,
    listen: SocketAddr,
    what: &str,
) -> Result<Option<(PathBuf, PathBuf)>, BoxError> {
    Ok(match (cert, key, section) {
        (Some(c), Some(k), _) => Some((c.clone(), k.clone())),
        (_, _, Some(t)) if !t.enabled => None,
        (
            _,
            _,
            Some(TlsSection {
                cert: Some(c),
                key: Some(k),
                ..
            }),
        ) => Some((c.clone(), k.clone())),
        (_, _, Some(_)) => {
            return Err("[tls] needs both cert and key (PEM files), or enabled = false".into());
        }
        (_, _, None) if listen.ip().is_loopback() => None,
        (_, _, None) => {
            return Err(format!(
                "refusing to serve {what} on {listen} without TLS: set [tls] cert and key \
                 (or --tls-cert and --tls-key), or [tls] enabled = false to serve plaintext on purpose"
            )
            .into());
        }
    })
}

/// Flight SQL's TLS configuration from the files.
fn tls(
    files: Option<&(PathBuf, PathBuf)>,
) -> Result<Option<tonic::transport::ServerTlsConfig>, BoxError> {
    let Some((cert, key)) = files else {
        return Ok(None);
    };
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).map_err(|e| format!("reading the TLS {what} {}: {e}", p.display()))
    };
    let identity =
        tonic::transport::Identity::from_pem(read(cert, "certificate")?, read(key, "key")?);
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
}

/// Refuses a configuration whose answers would not all come from the sources it names:
/// with `[clickhouse]`, the events and the catalog are ClickHouse's (and Redis's), so a
/// dataset folder would be a second, disagreeing source; with `[redis]` alone the cold store
/// is a dataset folder, which must be named. Demo logins are the embedded default's only.
fn configured_sources(
    file: &FileConfig,
    data: Option<&Path>,
    demo_logins: bool,
) -> Result<(), BoxError> {
    match (&file.clickhouse, &file.redis, data) {
        (Some(_), _, Some(dir)) => Err(format!(
            "--data {} (or `data =`) serves a dataset folder, but [clickhouse] is configured: \
             the events and the catalog come from ClickHouse{}. Load the folder with \
             `sluice load --config FILE --from {}` and serve without --data.",
            dir.display(),
            if file.redis.is_some() {
                " and Redis"
            } else {
                ""
            },
            dir.display(),
        )
        .into()),
        (Some(_), _, None) if demo_logins => Err("[clickhouse] is configured but no \
             [[principal]]: demo logins (password = user name) are only for the embedded \
             default. Add a [[principal]] for each listener, analyst and admin who may connect."
            .into()),
        (None, Some(_), None) => Err("[redis] is the hot store and there is no [clickhouse]: \
             the cold store is then a dataset folder (its Parquet files, which `sluice load` \
             loaded Redis from). Name it with --data DIR or `data = \"DIR\"`."
            .into()),
        _ => Ok(()),
    }
}

/// The sources to serve: the cold store (ClickHouse, else the dataset's Parquet files), the
/// hot store (Redis, else the dataset's last days in memory, else nothing: ClickHouse's `W`
/// is then the end of what it holds), `W` (from the hot store when it is Redis, else as
/// ClickHouse recorded it, else fixed by the dataset) and the catalog (ClickHouse's, else the
/// dataset's).
async fn open_sources(
    dataset: Option<&Dataset>,
    redis: Option<RedisConfig>,
    clickhouse: Option<ClickHouseConfig>,
    hot_days: u32,
) -> Result<(Sources, String), BoxError> {
    let Some(clickhouse) = clickhouse else {
        let dataset = dataset.ok_or("no dataset to serve")?;
        return Ok(match redis {
            Some(redis) => {
                // Cold: the dataset's Parquet files; hot: Redis, loaded by `sluice load`.
                let store = RedisHotStore::connect(redis).await?;
                let sources = Sources {
                    hot: Arc::new(store.clone()),
                    cold: Arc::new(ParquetColdStore::open(dataset)?),
                    watermark: Arc::new(RedisWatermark::new(store.clone())),
                    entities: entity_tables(dataset)?,
                    remote_entities: vec![],
                    rollups: vec![],
                };
                (sources, format!("Redis at {}", store.config().endpoint()))
            }
            None => {
                let config = EmbeddedConfig {
                    hot_days,
                    ..EmbeddedConfig::default()
                };
                let embedded = EmbeddedSources::open(dataset, &config)?;
                (embedded.sources, "memory".to_string())
            }
        });
    };
    let cold = ClickHouseColdStore::connect(clickhouse).await?;
    let (hot, watermark, hot_name): (Arc<dyn EventSource>, Arc<dyn Watermark>, String) = match redis
    {
        Some(redis) => {
            let store = RedisHotStore::connect(redis).await?;
            let name = format!("Redis at {}", store.config().endpoint());
            (
                Arc::new(store.clone()),
                Arc::new(RedisWatermark::new(store)),
                name,
            )
        }
        None => {
            // ClickHouse holds every event `sluice load` loaded (its W is the end of them);
            // the memory store takes what admins ingest from W on.
            let watermark = ClickHouseWatermark::new(cold.clone());
            watermark.current_ms().await?;
            (
                Arc::new(MemoryHotStore::new()),
                Arc::new(watermark),
                "memory (ingest only)".to_string(),
            )
        }
    };
    let sources = Sources {
        hot,
        cold: Arc::new(cold.clone()),
        watermark,
        entities: cold.catalog_tables().await?,
        remote_entities: cold.entity_tables(),
        rollups: cold.rollup_tables(sluice_catalog::rollups()),
    };
    Ok((
        sources,
        format!(
            "{hot_name}, cold store ClickHouse {} at {} (results in {})",
            cold.client().version(),
            cold.client().endpoint(),
            cold.client().result_format().name()
        ),
    ))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutdown requested");
}
