//! The configuration: the file, then `SLUICE_<SECTION>__<KEY>` environment variables over
//! it, then (in `serve`) flags and their own environment variables over both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_auth::{JwtConfig, LimitsConfig, PrincipalConfig};

/// `sluice serve --config FILE`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Address to serve Flight SQL on.
    pub(crate) listen: Option<SocketAddr>,
    /// Address of the metrics and health endpoint.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Dataset folder for the embedded sources.
    pub(crate) data: Option<PathBuf>,
    #[serde(default)]
    pub(crate) embedded: EmbeddedSection,
    /// The hot store in Redis. Without it, an in-memory hot store serves the dataset's
    /// last days.
    pub(crate) redis: Option<sluice_connector_redis::RedisConfig>,
    /// The cold store in ClickHouse. Without it, the dataset's Parquet files serve as the
    /// cold store.
    pub(crate) clickhouse: Option<sluice_connector_clickhouse::ClickHouseConfig>,
    #[serde(default)]
    pub(crate) auth: AuthSection,
    /// TLS for the Flight SQL endpoint (and the MCP endpoint).
    pub(crate) tls: Option<TlsSection>,
    /// The MCP endpoint for agents.
    #[serde(default)]
    pub(crate) mcp: McpSection,
    /// Every principal's limits, unless its own `limits` say otherwise.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// Where the audit record of each query goes besides the log.
    #[serde(default)]
    pub(crate) audit: AuditSection,
    /// The whole process: shutdown, admission and the shared memory pool.
    #[serde(default)]
    pub(crate) server: ServerSection,
    /// OpenTelemetry traces.
    #[serde(default)]
    pub(crate) telemetry: TelemetrySection,
    /// Who may log in. Empty: demo logins (every listener with its user id as password,
    /// and analyst/analyst).
    #[serde(default)]
    pub(crate) principal: Vec<PrincipalConfig>,
    /// A TOML file of more `[[principal]]` entries (kept apart for a secret store).
    pub(crate) principals_file: Option<PathBuf>,
}

/// `[server]`: what applies to the whole process rather than to one principal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// After SIGTERM or Ctrl-C, how long running queries get to finish (new ones are
    /// refused meanwhile) before the process exits anyway.
    #[serde(default = "default_shutdown_grace")]
    pub(crate) shutdown_grace_secs: u64,
    /// Queries running at once, all principals together; past it, a query is refused as
    /// busy (UNAVAILABLE). 0 = no limit.
    #[serde(default = "default_max_active")]
    pub(crate) max_active_queries: u32,
    /// Operator memory (sorts, joins, aggregates) of all running queries together, in MiB;
    /// a query that would go past it fails with RESOURCE_EXHAUSTED. 0 = no limit.
    #[serde(default = "default_memory_pool")]
    pub(crate) memory_pool_mb: u64,
    /// Routed plans kept for statements that come again (same SQL, principal, settings
    /// and `W`), so they skip planning. 0 = plan every statement.
    #[serde(default = "default_plan_cache_entries")]
    pub(crate) plan_cache_entries: usize,
    /// CreatePreparedStatement starts a query without parameters at once, so its sources
    /// are read while the client asks for its FlightInfo (ADBC and JDBC prepare every
    /// query and ask at once). The GetFlightInfo must come within 1 s, with the same
    /// session settings and no ingest through Sluice in between; else the query runs again.
    #[serde(default = "default_start_at_prepare")]
    pub(crate) start_at_prepare: bool,
    /// Replicas given the same secret (at least 32 bytes) accept each other's session
    /// tokens, prepared-statement handles and tickets, so a balancer may send any call to
    /// any of them. Unset: a random secret of this process.
    #[serde(default)]
    pub(crate) replica_secret: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            shutdown_grace_secs: default_shutdown_grace(),
            max_active_queries: default_max_active(),
            memory_pool_mb: default_memory_pool(),
            plan_cache_entries: default_plan_cache_entries(),
            start_at_prepare: default_start_at_prepare(),
            replica_secret: None,
        }
    }
}

fn default_shutdown_grace() -> u64 {
    30
}

fn default_max_active() -> u32 {
    64
}

fn default_memory_pool() -> u64 {
    4096
}

fn default_start_at_prepare() -> bool {
    true
}

fn default_plan_cache_entries() -> usize {
    sluice_planner::DEFAULT_PLAN_CACHE_ENTRIES
}

/// `[telemetry]`: traces of each query's phases, exported over OTLP/HTTP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TelemetrySection {
    /// The collector's OTLP/HTTP base address, e.g. `http://127.0.0.1:4318` (spans go to
    /// `/v1/traces` under it). None: no traces.
    pub(crate) otlp_endpoint: Option<String>,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub(crate) service_name: String,
}

fn default_service_name() -> String {
    "sluice".into()
}

/// A file named by `principals_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    principal: Vec<PrincipalConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddedSection {
    /// Days served by the hot store.
    pub(crate) hot_days: Option<u32>,
    /// Where the derived rollup files are built and read (default: the dataset's
    /// `rollups/`); a folder Sluice may write when the dataset is read-only.
    pub(crate) rollups_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// Lifetime of a session token issued by the handshake, in seconds.
    #[serde(default = "default_session_ttl")]
    pub(crate) session_ttl_secs: u64,
    /// Signed JWTs accepted as bearer tokens.
    pub(crate) jwt: Option<JwtConfig>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            session_ttl_secs: default_session_ttl(),
            jwt: None,
        }
    }
}

/// `[tls]`: a certificate chain and its key (PEM), or `enabled = false` to serve plaintext
/// on purpose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    #[serde(default = "enabled")]
    pub(crate) enabled: bool,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

fn enabled() -> bool {
    true
}

/// `[mcp]`: the Model Context Protocol endpoint (Streamable HTTP at `/mcp`). Served when
/// `listen` is set, and on loopback by the embedded default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct McpSection {
    /// Address to serve MCP on (`127.0.0.1:0` picks a free port).
    pub(crate) listen: Option<SocketAddr>,
    /// Rows `query` returns when the caller does not say.
    #[serde(default = "default_rows")]
    pub(crate) default_rows: usize,
    /// The most rows a caller may ask `query` for.
    #[serde(default = "max_rows")]
    pub(crate) max_rows: usize,
    /// The most bytes of rows (as JSON) `query` returns.
    #[serde(default = "max_bytes")]
    pub(crate) max_bytes: usize,
    /// `Host` values accepted. Default: loopback names when `listen` is loopback, else any
    /// (every request must carry a credential either way).
    pub(crate) allowed_hosts: Option<Vec<String>>,
}

impl Default for McpSection {
    fn default() -> Self {
        Self {
            listen: None,
            default_rows: default_rows(),
            max_rows: max_rows(),
            max_bytes: max_bytes(),
            allowed_hosts: None,
        }
    }
}

impl McpSection {
    /// The caps, checked.
    pub(crate) fn caps(&self) -> Result<sluice_mcp::Caps, String> {
        sluice_mcp::Caps {
            default_rows: self.default_rows,
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
        }
        .checked()
        .map_err(|e| format!("[mcp] {e}"))
    }
}

// The defaults are the MCP crate's.
fn default_rows() -> usize {
    sluice_mcp::Caps::default().default_rows
}

fn max_rows() -> usize {
    sluice_mcp::Caps::default().max_rows
}

fn max_bytes() -> usize {
    sluice_mcp::Caps::default().max_bytes
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// Appends one JSON line per query to this file.
    pub(crate) file: Option<PathBuf>,
}

fn default_session_ttl() -> u64 {
    12 * 3600
}

/// Prefix of the environment variables that set keys of the file.
const ENV_PREFIX: &str = "SLUICE_";
/// Between a section and its key in those variables: `SLUICE_CLICKHOUSE__URL`.
const ENV_NESTING: &str = "__";

impl FileConfig {
    /// The configuration file (if any) with the `SLUICE_<SECTION>__<KEY>` environment
    /// variables over it, checked: unknown keys and wrong types are errors that name the
    /// file or the variable.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, String> {
        Self::load_with(path, std::env::vars())
    }

    fn load_with(
        path: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, String> {
        let (table, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading configuration {}: {e}", path.display()))?;
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| format!("configuration {}: {e}", path.display()))?;
                (table, format!("configuration {}", path.display()))
            }
            None => (toml::Table::new(), "configuration".to_string()),
        };
        let mut value = toml::Value::Table(table);
        check(&value).map_err(|e| format!("{origin}: {e}"))?;
        let mut overrides: Vec<(String, String)> = env
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains(ENV_NESTING))
            .collect();
        overrides.sort();
        for (name, text) in overrides {
            set_from_env(&mut value, &name, &text)?;
        }
        let mut config: FileConfig = value.try_into().map_err(|e: toml::de::Error| {
            format!(
                "{origin} with the SLUICE_* environment: {}",
                e.message().trim()
            )
        })?;
        let dir = path.and_then(Path::parent).unwrap_or(Path::new(""));
        config.resolve_paths(dir);
        if let Some(file) = config.principals_file.clone() {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("reading principals_file {}: {e}", file.display()))?;
            let more: PrincipalsFile = toml::from_str(&text)
                .map_err(|e| format!("principals_file {}: {e}", file.display()))?;
            config.principal.extend(more.principal);
        }
        Ok(config)
    }

    /// Relative paths are relative to the configuration file.
    fn resolve_paths(&mut self, dir: &Path) {
        let tls = self.tls.as_mut();
        let jwt_key = self
            .auth
            .jwt
            .as_mut()
            .and_then(|j| j.public_key_file.as_mut());
        for p in [
            self.data.as_mut(),
            self.embedded.rollups_dir.as_mut(),
            self.audit.file.as_mut(),
            self.principals_file.as_mut(),
            jwt_key,
        ]
        .into_iter()
        .chain(
            tls.into_iter()
                .flat_map(|t| [t.cert.as_mut(), t.key.as_mut()]),
        )
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }
}

fn check(value: &toml::Value) -> Result<(), toml::de::Error> {
    value.clone().try_into::<FileConfig>().map(drop)
}

/// Whether `value` fits where `keys` puts it. Only its top-level section is checked, and
/// a missing field there is no objection yet (another variable may set it; the whole
/// configuration is checked at the end): serde reports missing fields only after every
/// present one has deserialized.
fn fits(root: &toml::Value, keys: &[String], value: toml::Value) -> Result<toml::Value, String> {
    let mut trial = root.clone();
    insert(&mut trial, keys, value)?;
    let mut section = toml::Table::new();
    if let Some(v) = trial.get(&keys[0]) {
        section.insert(keys[0].clone(), v.clone());
    }
    match check(&toml::Value::Table(section)) {
        Ok(()) => Ok(trial),
        Err(e) if e.message().starts_with("missing field") => Ok(trial),
        Err(e) => Err(e.message().trim().to_string()),
    }
}

/// Sets the key that `SLUICE_A__B__C` names (`a.b.c`) to `text`: as a string when the
/// key takes one (so a password of digits stays a string), else as a TOML value (`5000`,
/// `false`, `["redis://a:6379", "redis://b:6379"]`).
fn set_from_env(root: &mut toml::Value, name: &str, text: &str) -> Result<(), String> {
    let keys: Vec<String> = name[ENV_PREFIX.len()..]
        .split(ENV_NESTING)
        .map(str::to_ascii_lowercase)
        .collect();
    if keys.iter().any(String::is_empty) {
        return Err(format!(
            "environment variable {name}: expected SLUICE_<SECTION>__<KEY>"
        ));
    }
    let typed = format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    let mut error = String::new();
    for candidate in std::iter::once(toml::Value::String(text.to_string())).chain(typed) {
        match fits(root, &keys, candidate) {
            Ok(trial) => {
                *root = trial;
                return Ok(());
            }
            // The last objection: the typed one when there is one ("-5" for a count).
            Err(e) => error = e,
        }
    }
    Err(format!("environment variable {name}: {error}"))
}

fn insert(root: &mut toml::Value, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, sections) = keys.split_last().expect("at least one key");
    let mut table = root.as_table_mut().expect("the root is a table");
    for key in sections {
        table = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a section"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_form_parses() {
        let config: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:32010"
            [redis]
            url = "redis://127.0.0.1:6390/"
            [clickhouse]
            url = "http://127.0.0.1:8123"
            query_timeout_ms = 5000
            [[principal]]
            name = "u0001"
            password = "secret"
            role = "listener"
            user_id = "u0001"
            [auth.jwt]
            algorithm = "ES256"
            public_key_file = "issuer.pem"
            issuer = "https://idp.example"
            [tls]
            cert = "/etc/sluice/tls.crt"
            key = "/etc/sluice/tls.key"
            [limits]
            max_concurrent_queries = 4
            query_timeout_secs = 30
            [[principal]]
            name = "notebook"
            token = "t0k3n"
            role = "analyst"
            limits = { max_rows = 1000000 }
            "#,
        )
        .unwrap();
        assert_eq!(config.principal.len(), 2);
        let redis = config.redis.unwrap();
        assert_eq!(redis.key_prefix, "sluice:");
        assert_eq!(redis.grace_secs, 2 * 24 * 3600);
        assert_eq!(config.auth.session_ttl_secs, 12 * 3600);
        let clickhouse = config.clickhouse.unwrap();
        assert_eq!(clickhouse.database, "sluice");
        assert_eq!(clickhouse.query_timeout_ms, 5000);
        assert_eq!(config.principal[1].limits.max_rows, Some(1_000_000));
        assert_eq!(config.limits.max_concurrent_queries, Some(4));
        assert!(config.tls.unwrap().enabled);
        assert!(config.auth.jwt.is_some());
        assert!(toml::from_str::<FileConfig>("nonsense = 1").is_err());
    }

    fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn environment_variables_set_keys_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            "[clickhouse]\nurl = \"http://file:8123\"\nquery_timeout_ms = 1000\n[server]\nmax_active_queries = 3\n",
        )
        .unwrap();
        let config = FileConfig::load_with(
            Some(&file),
            env(&[
                // A section the file does not have, its required key set by a later variable.
                (
                    "SLUICE_REDIS__NODES",
                    r#"["redis://a:6379", "redis://b:6379"]"#,
                ),
                ("SLUICE_CLICKHOUSE__QUERY_TIMEOUT_MS", "5000"),
                // Digits stay a string where a string is expected.
                ("SLUICE_CLICKHOUSE__PASSWORD", "0123"),
                ("SLUICE_TLS__ENABLED", "false"),
                ("SLUICE_AUTH__JWT__ALGORITHM", "HS256"),
                (
                    "SLUICE_AUTH__JWT__SECRET",
                    "12345678901234567890123456789012",
                ),
                // Not ours: top-level names are the flags' variables; others are ignored.
                ("SLUICE_LISTEN", "0.0.0.0:1"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        let clickhouse = config.clickhouse.unwrap();
        assert_eq!(clickhouse.url, "http://file:8123");
        assert_eq!(clickhouse.query_timeout_ms, 5000);
        assert_eq!(clickhouse.password.as_deref(), Some("0123"));
        assert_eq!(config.redis.unwrap().nodes.len(), 2);
        assert!(!config.tls.unwrap().enabled);
        assert_eq!(config.server.max_active_queries, 3);
        assert_eq!(config.server.shutdown_grace_secs, 30);
        assert!(config.listen.is_none());
        assert!(config.auth.jwt.is_some());
    }

    #[test]
    fn environment_mistakes_name_the_variable() {
        let err = |vars: &[(&str, &str)]| FileConfig::load_with(None, env(vars)).unwrap_err();
        let e = err(&[("SLUICE_CLICKHOUSE__QUERY_TIMEOUT_MS", "soon")]);
        assert!(
            e.starts_with("environment variable SLUICE_CLICKHOUSE__QUERY_TIMEOUT_MS: invalid type"),
            "{e}"
        );
        let e = err(&[("SLUICE_CLICKHOUSE__PASWORD", "x")]);
        assert!(
            e.contains("SLUICE_CLICKHOUSE__PASWORD: unknown field `pasword`"),
            "{e}"
        );
        let e = err(&[("SLUICE_NOPE__X", "1")]);
        assert!(e.contains("SLUICE_NOPE__X: unknown field `nope`"), "{e}");
        let e = err(&[("SLUICE_CLICKHOUSE__PASSWORD", "x")]);
        assert!(e.contains("missing field `url`"), "{e}");
        let e = err(&[("SLUICE_SERVER__", "1")]);
        assert!(e.contains("expected SLUICE_<SECTION>__<KEY>"), "{e}");
    }

    #[test]
    fn principals_file_adds_principals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("principals.toml"),
            "[[principal]]\nname = \"nb\"\ntoken = \"t\"\nrole = \"analyst\"\n",
        )
        .unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(&file, "principals_file = \"principals.toml\"\n").unwrap();
        let config = FileConfig::load_with(Some(&file), env(&[])).unwrap();
        assert_eq!(config.principal.len(), 1);
        assert_eq!(config.principal[0].name, "nb");
    }
}
