use std::time::Duration;

use serde::Deserialize;

/// `[redis]` in the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// One server: `redis://host:port/db` (or `rediss://` for TLS).
    #[serde(default)]
    pub url: Option<String>,
    /// A Redis Cluster: some of its nodes (`redis://host:port`); the rest are discovered.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// ACL user (Redis 6+), when the server wants one; overrides one in `url`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (`AUTH`), when the server wants one; overrides one in `url`. Kept apart
    /// from the URLs so a secret store can hold it (`SLUICE_REDIS__PASSWORD`).
    #[serde(default)]
    pub password: Option<String>,
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
    /// One server at `url`, defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            nodes: Vec::new(),
            username: None,
            password: None,
            key_prefix: default_prefix(),
            grace_secs: default_grace(),
            connect_timeout_ms: default_connect_timeout(),
            command_timeout_ms: default_command_timeout(),
        }
    }

    /// What to connect to, checked: one server or a cluster, not both, not neither.
    pub(crate) fn target(&self) -> Result<Target<'_>, String> {
        match (&self.url, self.nodes.as_slice()) {
            (Some(url), []) => Ok(Target::Server(url)),
            (None, nodes) if !nodes.is_empty() => Ok(Target::Cluster(nodes)),
            (Some(_), _) => Err("[redis] has both url and nodes; give url for one server, \
                                 nodes for a cluster"
                .into()),
            (None, _) => Err("[redis] needs url (one server) or nodes (a cluster)".into()),
        }
    }

    /// The server or cluster, for messages: `redis://h:p/` or `cluster redis://a,redis://b`.
    pub fn endpoint(&self) -> String {
        match self.target() {
            Ok(Target::Server(url)) => url.to_string(),
            Ok(Target::Cluster(nodes)) => format!("cluster {}", nodes.join(",")),
            Err(_) => "(misconfigured)".into(),
        }
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// A checked [`RedisConfig`] connection target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Server(&'a str),
    Cluster(&'a [String]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_or_nodes() {
        let parse = |s: &str| toml::from_str::<RedisConfig>(s).unwrap();
        assert!(matches!(
            parse("url = 'redis://a/'").target(),
            Ok(Target::Server(_))
        ));
        assert!(matches!(
            parse("nodes = ['redis://a:1', 'redis://b:2']").target(),
            Ok(Target::Cluster(n)) if n.len() == 2
        ));
        assert!(
            parse("url = 'redis://a/'\nnodes = ['redis://b:1']")
                .target()
                .is_err()
        );
        assert!(parse("grace_secs = 1").target().is_err());
    }
}
