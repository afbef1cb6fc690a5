use std::time::Duration;

use serde::Deserialize;

/// `[clickhouse]` in the configuration file: where the cold store lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding Sluice's tables (created by `sluice clickhouse init`).
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default)]
    pub password: Option<String>,
    /// How long connecting (and the version check at start) may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one query may run, enforced by ClickHouse (`max_execution_time`) and by the
    /// gateway, which stops waiting and kills the query.
    #[serde(default = "default_query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// Compress responses (lz4 over HTTP). Worth it when ClickHouse is across a network.
    #[serde(default)]
    pub compression: bool,
}

fn default_database() -> String {
    "sluice".to_string()
}
fn default_user() -> String {
    "default".to_string()
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_query_timeout_ms() -> u64 {
    30_000
}

impl ClickHouseConfig {
    /// A configuration with the defaults, for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: default_database(),
            user: default_user(),
            password: None,
            connect_timeout_ms: default_connect_timeout_ms(),
            query_timeout_ms: default_query_timeout_ms(),
            compression: false,
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }

    /// The endpoint for messages: URL and database, never the password.
    pub fn endpoint(&self) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), self.database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: ClickHouseConfig = toml::from_str(r#"url = "http://127.0.0.1:8123""#).unwrap();
        assert_eq!(c.database, "sluice");
        assert_eq!(c.user, "default");
        assert_eq!(c.query_timeout(), Duration::from_secs(30));
        assert_eq!(c.endpoint(), "http://127.0.0.1:8123/sluice");
        assert!(toml::from_str::<ClickHouseConfig>("url = \"x\"\nhost = \"y\"").is_err());
    }
}
