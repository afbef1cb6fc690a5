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
    /// The format results are read in: `auto` (the default: `ArrowStream` on servers from
    /// 23.x, `Native` before), `native` or `arrow_stream` to force either.
    #[serde(default)]
    pub result_format: ResultFormat,
    /// The `remote_servers` cluster Sluice's tables are sharded over, by listener
    /// (`docs/scaling.md`). Unset: one node holds everything.
    #[serde(default)]
    pub cluster: Option<String>,
    /// With `cluster`: the HTTP interface of one server of each shard, in any order (each
    /// says which shard it is). `clickhouse init` and the catalog's load go to every one; a
    /// listener's query goes straight to its shard's. `url` is the node the rest goes through.
    #[serde(default)]
    pub shards: Vec<String>,
}

/// `result_format` in `[clickhouse]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultFormat {
    /// Chosen from the server's version at connect.
    #[default]
    Auto,
    /// ClickHouse's own columnar format, on every version.
    Native,
    /// Arrow IPC batches, read with no per-value decoding.
    ArrowStream,
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
            result_format: ResultFormat::Auto,
            cluster: None,
            shards: Vec::new(),
        }
    }

    /// The same settings for another server (a shard's, at `url`).
    pub fn for_server(&self, url: &str) -> Self {
        Self {
            url: url.to_string(),
            ..self.clone()
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
        assert_eq!(c.result_format, ResultFormat::Auto);
        assert!(toml::from_str::<ClickHouseConfig>("url = \"x\"\nhost = \"y\"").is_err());
        let forced: ClickHouseConfig =
            toml::from_str("url = \"x\"\nresult_format = \"arrow_stream\"").unwrap();
        assert_eq!(forced.result_format, ResultFormat::ArrowStream);
        let e = toml::from_str::<ClickHouseConfig>("url = \"x\"\nresult_format = \"json\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auto`, `native`, `arrow_stream"), "{e}");
    }
}
