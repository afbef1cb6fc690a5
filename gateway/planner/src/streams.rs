//! The `streams` table: one name over two sources, the cold store (events before the query's
//! watermark `W`) and the hot store (events from `W` on). The SQL planner sees one table
//! ([`StreamsTable`]); the route's rules replace every read of it with reads of its branches
//! ([`branch_plan`]), each a scan of one source with the query's filters and its half of the
//! range at `W` (see `rules::streams_split`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue, TableReference, internal_err};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, TableScan, lit,
};
use datafusion::physical_plan::ExecutionPlan;
use sluice_catalog::TIME_ZONE;
use sluice_connector_api::EventSource;

use crate::route::RouteBranch;
use crate::source_reads::CountedTable;

/// The `streams` table as the SQL planner sees it: both branches behind one name. It is
/// never scanned: `rules::streams_split` replaces its scans with the branches.
#[derive(Debug)]
pub(crate) struct StreamsTable {
    pub(crate) hot: Arc<dyn EventSource>,
    pub(crate) cold: Arc<dyn EventSource>,
    schema: SchemaRef,
}

impl StreamsTable {
    pub(crate) fn new(hot: Arc<dyn EventSource>, cold: Arc<dyn EventSource>) -> Self {
        Self {
            hot,
            cold,
            schema: sluice_catalog::streams_schema(),
        }
    }
}

#[async_trait]
impl TableProvider for StreamsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The branches take the filters; DataFusion re-applies them exactly.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        internal_err!("streams is split into its branches before it is read")
    }
}

pub(crate) fn ts_literal(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some(TIME_ZONE.into()),
    ))
}

/// The cold and hot sources of a scan of `streams`; `None` for any other scan.
pub(crate) fn streams_branches(
    scan: &TableScan,
) -> Option<(Arc<dyn EventSource>, Arc<dyn EventSource>)> {
    let provider = source_as_provider(&scan.source).ok()?;
    let streams = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<StreamsTable>()?;
    Some((Arc::clone(&streams.cold), Arc::clone(&streams.hot)))
}

/// One branch: the source's table, filtered by the query's filters and the branch's half
/// of the range (written in the source's column names), projected to the columns the scan
/// of `streams` wanted, named as it named them.
pub(crate) fn branch_plan(
    scan: &TableScan,
    source: &Arc<dyn EventSource>,
    branch: RouteBranch,
    half: Expr,
) -> Result<LogicalPlan> {
    let table = source.table();
    let federated =
        datafusion_federation::get_table_source(&provider_as_source(Arc::clone(&table)))?.is_some();
    // Sources the gateway reads itself are counted as they are read; federated ones where
    // the federated plan runs.
    let table: Arc<dyn TableProvider> = if federated {
        table
    } else {
        Arc::new(CountedTable::new(table, source.name(), branch.label()))
    };
    let renamed = source.renamed_columns();
    let source_name = |logical: &str| -> String {
        renamed
            .iter()
            .find(|(l, _)| *l == logical)
            .map_or(logical, |(_, s)| *s)
            .to_string()
    };
    let name = TableReference::bare(format!("{}_{}", branch.label(), source.name()));
    let scan_name = if federated {
        // The remote table's own name, so the SQL reads well; rewritten to it anyway.
        TableReference::bare(crate::federation::remote_name(&table).unwrap_or(name.to_string()))
    } else {
        name
    };
    let to_source = |e: Expr| -> Result<Expr> {
        e.transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new(
                Some(scan_name.clone()),
                source_name(&c.name),
            )))),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    };
    let filters = scan
        .filters
        .iter()
        .cloned()
        .chain([half])
        .map(to_source)
        .collect::<Result<Vec<_>>>()?;
    let mut builder = LogicalPlanBuilder::scan(scan_name.clone(), provider_as_source(table), None)?;
    if let Some(predicate) = conjunction(filters) {
        builder = builder.filter(predicate)?;
    }
    let exprs = scan
        .projected_schema
        .fields()
        .iter()
        .map(|f| {
            Expr::Column(Column::new(Some(scan_name.clone()), source_name(f.name())))
                .alias_qualified(Some(scan.table_name.clone()), f.name())
        })
        .collect::<Vec<_>>();
    builder.project(exprs)?.build()
}
