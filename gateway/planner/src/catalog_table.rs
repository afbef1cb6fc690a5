//! The catalog tables (`tracks`, `artists`, `albums`) as the SQL planner sees them: served
//! from the gateway's memory, with an optional copy in the remote engine that
//! `rules::catalog_join_placement` may read instead, and their rows indexed by key for joins by
//! lookup ([`crate::keyed_catalog`]).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::{ExecutionPlan, collect};
use tokio::sync::OnceCell;

use crate::keyed_catalog::{KeyedCatalog, KeyedScanExec};

/// A catalog table the gateway serves from memory, with an optional copy in the remote
/// engine, and its rows indexed by `key` for joins by lookup.
#[derive(Debug)]
pub(crate) struct CatalogTable {
    local: Arc<dyn TableProvider>,
    remote: Option<Arc<dyn TableProvider>>,
    /// The table's one-column primary key, if it has one.
    key: Option<String>,
    /// Built at the first read (the catalog does not change while Sluice runs); `None` if
    /// the keys are not unique.
    keyed: OnceCell<Option<Arc<KeyedCatalog>>>,
}

impl CatalogTable {
    pub(crate) fn new(
        local: Arc<dyn TableProvider>,
        remote: Option<Arc<dyn TableProvider>>,
        key: Option<String>,
    ) -> Self {
        Self {
            local,
            remote,
            key,
            keyed: OnceCell::new(),
        }
    }

    /// The table's copy in the remote engine, if it has one.
    pub(crate) fn remote(&self) -> Option<&Arc<dyn TableProvider>> {
        self.remote.as_ref()
    }

    async fn keyed(&self, state: &dyn Session) -> Result<Option<Arc<KeyedCatalog>>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        self.keyed
            .get_or_try_init(|| async {
                let all = self.local.scan(state, None, &[], None).await?;
                let batches = collect(all, state.task_ctx()).await?;
                Ok(KeyedCatalog::build(&self.schema(), &batches, key).map(Arc::new))
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.local.schema()
    }

    fn table_type(&self) -> TableType {
        self.local.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters stay above the scan, valid whichever copy is read.
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan = self.local.scan(state, projection, filters, limit).await?;
        if limit.is_some() {
            return Ok(scan);
        }
        Ok(match self.keyed(state).await? {
            Some(keyed) => Arc::new(KeyedScanExec::new(scan, keyed, projection)),
            None => scan,
        })
    }
}
