//! `sluice clickhouse init`.

use sluice_connector_clickhouse::ClickHouseColdStore;

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
        println!(
            "ClickHouse {} at {}: tables ready",
            store.client().version(),
            store.client().endpoint()
        );
        Ok(())
    })
}
