use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use sluice_catalog::Dataset;
use sluice_connector_api::EventSource;

use crate::error::Result;

/// The cold branch of `streams` on the embedded default: the dataset's Parquet files, one
/// per year, sorted by `(user_id, ts)` with row-group statistics, so DataFusion skips the row
/// groups of other listeners and other years.
#[derive(Debug)]
pub struct ParquetColdStore {
    table: Arc<dyn TableProvider>,
}

impl ParquetColdStore {
    pub fn open(dataset: &Dataset) -> Result<Self> {
        let dir = dataset.streams_dir();
        let dir = std::fs::canonicalize(&dir).map_err(|source| crate::Error::Open {
            path: dir.clone(),
            source,
        })?;
        let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(sluice_catalog::streams_schema());
        Ok(Self {
            table: Arc::new(ListingTable::try_new(config)?),
        })
    }
}

#[async_trait::async_trait]
impl EventSource for ParquetColdStore {
    fn name(&self) -> &str {
        "parquet"
    }

    fn table(&self) -> Arc<dyn TableProvider> {
        Arc::clone(&self.table)
    }
}
