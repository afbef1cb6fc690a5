//! `sluice clickhouse init`.

use sluice_connector_clickhouse::{ClickHouseColdStore, Layout};

use crate::cli::ClickhouseInitArgs;
use crate::config::FileConfig;

pub(crate) fn init(args: ClickhouseInitArgs) -> Result<(), Box<dyn std::error::Error>> {
    let file = FileConfig::load(args.config.as_deref())?;
    let Some(config) = file.clickhouse else {
        return Err(
            "no [clickhouse] section in the configuration (nor SLUICE_CLICKHOUSE__URL)".into(),
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = ClickHouseColdStore::connect(config).await?;
        store.init(sluice_catalog::rollups()).await?;
        let layout = match store.layout() {
            Layout::Single => String::new(),
            Layout::Sharded { cluster } => format!(
                " on every shard of cluster {cluster} ({})",
                store.shard_endpoints().join(", ")
            ),
        };
        println!(
            "ClickHouse {} at {}: tables ready{layout}",
            store.client().version(),
            store.client().endpoint()
        );
        Ok(())
    })
}
