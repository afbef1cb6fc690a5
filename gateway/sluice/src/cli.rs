use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

/// Sluice: an Arrow Flight SQL gateway over listening histories.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve Flight SQL. With no options: generates (first run) or reuses demo data in
    /// `data/demo` and serves it from embedded sources, with demo logins.
    Serve(ServeArgs),
    /// Generate a deterministic demo dataset (Parquet) into a folder.
    Generate(GenerateArgs),
    /// Load a generated dataset per the hot/cold contract: events before W (and the catalog)
    /// into ClickHouse, then W, then the recent events into Redis; whichever are configured.
    Load(LoadArgs),
    /// Manage the ClickHouse cold store.
    #[command(subcommand)]
    Clickhouse(ClickhouseCommand),
    /// Read a password from standard input and print its Argon2id hash, for a principal's
    /// `password_hash`.
    HashPassword,
    /// Serve MCP on stdio for a host that starts a command, as a Flight SQL client of a
    /// running gateway: the same tools as the gateway's `/mcp`. The credential comes from the
    /// environment: SLUICE_TOKEN (a token or JWT), or SLUICE_USER and SLUICE_PASSWORD.
    Mcp(McpArgs),
    /// GET an HTTP address and succeed on a 2xx answer: a health check for images without
    /// curl, e.g. `sluice probe http://127.0.0.1:9090/readyz`.
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// The gateway: `grpc://host:port` or `grpc+tls://host:port`.
    #[arg(long, env = "SLUICE_URL", default_value = "grpc://127.0.0.1:32010")]
    pub(crate) url: String,
    /// The CA (PEM) of the gateway's certificate, for grpc+tls.
    #[arg(long, env = "SLUICE_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Rows `query` returns when the caller does not say.
    #[arg(long, default_value_t = sluice_mcp::Caps::default().default_rows)]
    pub(crate) default_rows: usize,
    /// The most rows a caller may ask `query` for.
    #[arg(long, default_value_t = sluice_mcp::Caps::default().max_rows)]
    pub(crate) max_rows: usize,
    /// The most bytes of rows (as JSON) `query` returns.
    #[arg(long, default_value_t = sluice_mcp::Caps::default().max_bytes)]
    pub(crate) max_bytes: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// `http://host:port/path`.
    pub(crate) url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub(crate) timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClickhouseCommand {
    /// Create Sluice's database, tables, rollups (materialized views) and catalog tables in
    /// the configured ClickHouse, if missing. Safe to run again.
    Init(ClickhouseInitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ClickhouseInitArgs {
    /// Configuration file with a `[clickhouse]` section (or SLUICE_CLICKHOUSE__* variables).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Configuration file with a `[clickhouse]` and/or `[redis]` section (or SLUICE_*
    /// variables that set them).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Dataset folder written by `sluice generate`.
    #[arg(long)]
    pub(crate) from: PathBuf,
    /// Days of the dataset that the hot store serves: W is midnight UTC of the dataset's
    /// end minus this. Default: the configuration's `embedded.hot_days`, else 7.
    #[arg(long)]
    pub(crate) hot_days: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML): principals, data folder, listen address.
    #[arg(long, env = "SLUICE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to serve Flight SQL on (`127.0.0.1:0` picks a free port). Default:
    /// 127.0.0.1:32010.
    #[arg(long, env = "SLUICE_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Dataset folder written by `sluice generate`. Default: `data/demo`, generated on
    /// first run and refreshed when its days are over.
    #[arg(long, env = "SLUICE_DATA")]
    pub(crate) data: Option<PathBuf>,
    /// Days of the dataset served by the hot store (the watermark W is midnight UTC of the
    /// dataset's end minus this). Default: 7.
    #[arg(long, env = "SLUICE_HOT_DAYS")]
    pub(crate) hot_days: Option<u32>,
    /// TLS certificate chain (PEM) for the Flight SQL endpoint; with --tls-key.
    #[arg(long, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Address of the HTTP endpoint for Prometheus `/metrics`, `/healthz` and `/readyz`
    /// (`127.0.0.1:0` picks a free port). Default: none.
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Address to serve MCP (Streamable HTTP, `/mcp`) on (`127.0.0.1:0` picks a free port).
    /// Default: `[mcp] listen`; the embedded default serves it on loopback (127.0.0.1:32011
    /// beside the default Flight SQL address, a free port beside another).
    #[arg(long, env = "SLUICE_MCP_LISTEN")]
    pub(crate) mcp_listen: Option<SocketAddr>,
    /// Check the configuration (file, then SLUICE_* variables, then flags) without
    /// connecting to anything, print the settings in effect (no secrets), and exit.
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Number of listeners.
    #[arg(long, default_value_t = 10)]
    pub(crate) users: u32,
    /// Years of history.
    #[arg(long, default_value_t = 10)]
    pub(crate) years: u32,
    /// Seed of every random choice: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Number of artists (popular ones have long catalogues; about 25 tracks each on average).
    #[arg(long, default_value_t = 1000)]
    pub(crate) artists: u32,
    /// First day not generated (YYYY-MM-DD). Default: today (UTC).
    #[arg(long)]
    pub(crate) end: Option<NaiveDate>,
    /// Output folder.
    #[arg(long)]
    pub(crate) out: PathBuf,
}
