use std::time::Duration;

use serde::Deserialize;

/// `[redis]` in the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Prefix of every key Sluice reads and writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How long events older than `W` stay in Redis, so a query that read an older `W`
    /// still finds them (seconds).
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
    /// Connecting, in milliseconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Each command, in milliseconds.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_ms: u64,
}

fn default_prefix() -> String {
    "sluice:".into()
}

fn default_grace() -> u64 {
    2 * 24 * 3600
}

fn default_connect_timeout() -> u64 {
    2_000
}

fn default_command_timeout() -> u64 {
    2_000
}

impl RedisConfig {
    /// A configuration with defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: default_prefix(),
            grace_secs: default_grace(),
            connect_timeout_ms: default_connect_timeout(),
            command_timeout_ms: default_command_timeout(),
        }
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}
