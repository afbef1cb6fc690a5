//! The configuration file. Flags and environment variables override its values.

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
    /// TLS for the Flight SQL endpoint.
    pub(crate) tls: Option<TlsSection>,
    /// Every principal's limits, unless its own `limits` say otherwise.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// Where the audit record of each query goes besides the log.
    #[serde(default)]
    pub(crate) audit: AuditSection,
    /// Who may log in. Empty: demo logins (every listener with its user id as password,
    /// and analyst/analyst).
    #[serde(default)]
    pub(crate) principal: Vec<PrincipalConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddedSection {
    /// Days served by the hot store.
    pub(crate) hot_days: Option<u32>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// Appends one JSON line per query to this file.
    pub(crate) file: Option<PathBuf>,
}

fn default_session_ttl() -> u64 {
    12 * 3600
}

impl FileConfig {
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading configuration {}: {e}", path.display()))?;
        let mut config: FileConfig =
            toml::from_str(&text).map_err(|e| format!("configuration {}: {e}", path.display()))?;
        // Relative paths are relative to the configuration file.
        let dir = path.parent().unwrap_or(Path::new(""));
        let tls = config.tls.as_mut();
        let jwt_key = config
            .auth
            .jwt
            .as_mut()
            .and_then(|j| j.public_key_file.as_mut());
        for p in [config.data.as_mut(), config.audit.file.as_mut(), jwt_key]
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
        Ok(config)
    }
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
}
