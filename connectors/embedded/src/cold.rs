use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
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
        Ok(Self {
            table: parquet_table(&dir, sluice_catalog::streams_schema())?,
        })
    }
}

/// The Parquet files at `path` (a folder, or one file) as a table with `schema`.
pub(crate) fn parquet_table(path: &Path, schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
    let url = if path.is_dir() {
        format!("{}/", path.display())
    } else {
        path.display().to_string()
    };
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(ListingTableUrl::parse(url)?)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
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
