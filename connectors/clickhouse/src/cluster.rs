//! The shards of `[clickhouse] cluster`: one client per shard, and which shard a listener's
//! rows live on. Each configured server says which shard it is (`system.clusters.is_local`),
//! so the list may be in any order; the cluster's own definition (`remote_servers`) decides
//! the shards and their weights, as it does for the `Distributed` tables.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hasher;

use siphasher::sip::SipHasher;
use tracing::debug;

use crate::client::ClickHouseClient;
use crate::config::ClickHouseConfig;
use crate::error::{Error, Result};
use crate::schema::sharded_tables;
use crate::shard_statement::{ListenerStatement, listener_statement};

/// A sharded cluster as the gateway reaches it.
#[derive(Debug)]
pub(crate) struct Shards {
    cluster: String,
    /// The client of shard `i + 1` (`shard_num` counts from one).
    clients: Vec<ClickHouseClient>,
    /// The shard of each weight slot: a listener's key modulo their number picks one, as
    /// ClickHouse's `Distributed` engine does.
    slots: Vec<usize>,
    /// The tables split by listener, which a listener's statement reads on its shard.
    sharded: HashSet<String>,
}

impl Shards {
    /// Reads the cluster's shards from `entry` (the server `url` names) and connects to
    /// each of `config.shards`, refusing a layout that would put a listener's reads on the
    /// wrong server: a shard with no server configured, a server in no shard, two for one.
    pub(crate) async fn connect(
        entry: &ClickHouseClient,
        config: &ClickHouseConfig,
    ) -> Result<Self> {
        let cluster = config.cluster.clone().unwrap_or_default();
        let err = |message: String| Error::Cluster {
            endpoint: entry.endpoint().to_string(),
            cluster: cluster.clone(),
            message,
        };
        if config.shards.is_empty() {
            return Err(err(
                "`shards` is empty: list the HTTP URL of one server of each shard".into(),
            ));
        }
        let text = entry
            .system_text(
                &format!(
                    "SELECT shard_num, any(shard_weight) FROM system.clusters \
                     WHERE cluster = {} GROUP BY shard_num ORDER BY shard_num",
                    crate::schema::literal(&cluster)
                ),
                "read the cluster",
            )
            .await?;
        let weights: Vec<(usize, u64)> = text
            .lines()
            .filter_map(|l| {
                let (n, w) = l.split_once('\t')?;
                Some((n.parse().ok()?, w.parse().ok()?))
            })
            .collect();
        if weights.is_empty() {
            return Err(err(
                "no such cluster in this server's `remote_servers` (system.clusters)".into(),
            ));
        }
        let count = weights.len();
        if weights.iter().enumerate().any(|(i, (n, _))| *n != i + 1) {
            return Err(err(format!("unexpected shard numbers {weights:?}")));
        }
        let mut by_shard: BTreeMap<usize, ClickHouseClient> = BTreeMap::new();
        for url in &config.shards {
            let client = ClickHouseClient::connect(config.for_server(url)).await?;
            let own = client
                .system_text(
                    &format!(
                        "SELECT DISTINCT shard_num FROM system.clusters \
                         WHERE cluster = {} AND is_local",
                        crate::schema::literal(&cluster)
                    ),
                    "find its shard",
                )
                .await?;
            let numbers: Vec<usize> = own.lines().filter_map(|l| l.parse().ok()).collect();
            let [shard] = numbers.as_slice() else {
                return Err(err(format!(
                    "the server at {url} is {} of the cluster's shards (its system.clusters \
                     has is_local for {numbers:?}); list one server of each shard",
                    if numbers.is_empty() {
                        "in none"
                    } else {
                        "in several"
                    }
                )));
            };
            if let Some(other) = by_shard.insert(*shard, client) {
                return Err(err(format!(
                    "{url} and {} are both shard {shard}: list one server of each shard",
                    other.config().url
                )));
            }
        }
        let missing: Vec<usize> = (1..=count).filter(|n| !by_shard.contains_key(n)).collect();
        if !missing.is_empty() {
            return Err(err(format!(
                "no server in `shards` for shard {missing:?} of {count}"
            )));
        }
        let slots = weights
            .iter()
            .flat_map(|(n, w)| std::iter::repeat_n(n - 1, *w as usize))
            .collect::<Vec<_>>();
        if slots.is_empty() {
            return Err(err("every shard has weight 0".into()));
        }
        debug!(%cluster, shards = count, "connected to every shard");
        Ok(Self {
            cluster,
            clients: by_shard.into_values().collect(),
            slots,
            sharded: sharded_tables(sluice_catalog::rollups())
                .into_iter()
                .map(str::to_string)
                .collect(),
        })
    }

    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Every shard's client, in shard order.
    pub(crate) fn clients(&self) -> &[ClickHouseClient] {
        &self.clients
    }

    /// The shard (from zero) holding `user_id`'s rows.
    pub(crate) fn shard_of(&self, user_id: &str) -> usize {
        self.slots[(sharding_key(user_id) % self.slots.len() as u64) as usize]
    }

    /// `sql` for the one shard it needs, and that shard, if it reads one listener only.
    pub(crate) fn route(&self, sql: &str) -> Option<(usize, ListenerStatement)> {
        let statement = listener_statement(sql, &self.sharded)?;
        Some((self.shard_of(&statement.user_id), statement))
    }
}

/// ClickHouse's `sipHash64(user_id)` (SipHash-2-4, zero key): the sharding key of the
/// `Distributed` tables ([`crate::schema::SHARDING_KEY`]).
fn sharding_key(user_id: &str) -> u64 {
    let mut hasher = SipHasher::new();
    hasher.write(user_id.as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values ClickHouse 18.16 returned for `SELECT sipHash64(...)`.
    #[test]
    fn the_key_is_clickhouses_siphash64() {
        for (value, clickhouse) in [
            ("u0002", 7288938629492737127u64),
            ("u0001", 3050031847436532574),
            ("", 2202906307356721367),
            ("abcdefghijklmnopqrstuvwxyz", 12516068088233838080),
        ] {
            assert_eq!(sharding_key(value), clickhouse, "{value:?}");
        }
    }
}
