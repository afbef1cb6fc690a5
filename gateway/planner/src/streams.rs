//! `streams` as the union of its two branches at the query's watermark `W`:
//! `cold(ts < W) UNION ALL hot(ts >= W)`. Half-open on both sides, so an event at exactly
//! `W` is read once, from the hot branch. A branch whose half cannot meet the query's own
//! time filters is not read at all.
//!
//! The split is a logical rewrite ([`StreamsSplitRule`]), made after DataFusion has pushed
//! the query's filters into the scan of `streams`: each branch becomes a scan of its source
//! with those filters and its half of the range, so the federation step that follows can
//! hand a cold branch in ClickHouse, with everything above it that ClickHouse can run, to
//! ClickHouse as one statement.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue, TableReference, internal_err, plan_err};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, TableScan,
    col, lit,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use sluice_catalog::TIME_ZONE;
use sluice_connector_api::{EventFilter, EventSource, TimeRange};

use crate::rewrite::rewrite_nodes;
use crate::rollups::RollupChoice;
use crate::settings::{Freshness, RouteMode};
use crate::source_reads::CountedTable;

/// Which branch of `streams` a read went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteBranch {
    /// Events before `W`.
    Cold,
    /// Events at or after `W`.
    Hot,
}

impl RouteBranch {
    pub(crate) fn label(self) -> &'static str {
        match self {
            RouteBranch::Cold => "cold",
            RouteBranch::Hot => "hot",
        }
    }
}

/// One read of a `streams` branch, recorded while planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) branch: RouteBranch,
    /// The source that served it (`parquet`, `memory`, `clickhouse`, `redis`).
    pub(crate) source: String,
    /// The time range read, after intersecting the query's filters with the branch's half.
    pub(crate) time: TimeRange,
    /// The listeners read, if the filters named them.
    pub(crate) users: Option<Vec<String>>,
    /// The rollup read instead of raw events, if any.
    pub(crate) rollup: Option<String>,
}

/// What one query carries through planning: its watermark and route settings, and the reads
/// and rollup choices it planned.
#[derive(Debug)]
pub(crate) struct QueryScope {
    pub(crate) watermark_ms: i64,
    pub(crate) route: RouteMode,
    pub(crate) freshness: Freshness,
    pub(crate) routes: Mutex<Vec<Route>>,
    pub(crate) rollups: Mutex<Vec<RollupChoice>>,
    /// The listener a listener's query is scoped to (`None` for analysts and admins).
    pub(crate) listener: Option<Arc<str>>,
}

/// The `streams` table as the SQL planner sees it: both branches behind one name. It is
/// never scanned: [`StreamsSplitRule`] replaces its scans with the branches.
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

/// The query's [`QueryScope`], carried in its config options so that one optimizer rule,
/// registered once, reads each query's own `W`. Not settable from SQL.
#[derive(Debug, Clone)]
pub(crate) struct QueryScopeOption(pub(crate) Arc<QueryScope>);

impl ExtensionOptions for QueryScopeOption {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        plan_err!(
            "{}.{key} is set by Sluice for each query, not by SQL",
            Self::PREFIX
        )
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        vec![]
    }
}

impl QueryScopeOption {
    /// The scope of the query being optimized, if it is a Sluice query.
    pub(crate) fn of(config: &dyn OptimizerConfig) -> Option<Arc<QueryScope>> {
        config
            .options()
            .extensions
            .get::<QueryScopeOption>()
            .map(|s| Arc::clone(&s.0))
    }
}

impl ConfigExtension for QueryScopeOption {
    const PREFIX: &'static str = "sluice_query";
}

/// Replaces every scan of `streams` with the union of its branches at the query's `W`.
#[derive(Debug, Default)]
pub(crate) struct StreamsSplitRule;

impl StreamsSplitRule {
    fn split(
        &self,
        scope: &QueryScope,
        scan: &TableScan,
        cold: &Arc<dyn EventSource>,
        hot: &Arc<dyn EventSource>,
    ) -> Result<LogicalPlan> {
        let w = scope.watermark_ms;
        let wanted = EventFilter::from_filters(&scan.filters);
        let users = wanted
            .users
            .as_ref()
            .map(|u| u.iter().cloned().collect::<Vec<_>>());
        let mut branches = Vec::with_capacity(2);
        for (branch, source, range, half) in [
            (
                RouteBranch::Cold,
                cold,
                wanted.time.before(w),
                col("ts").lt(ts_literal(w)),
            ),
            (
                RouteBranch::Hot,
                hot,
                wanted.time.at_or_after(w),
                col("ts").gt_eq(ts_literal(w)),
            ),
        ] {
            if range.is_empty()
                || wanted.is_empty()
                || (branch == RouteBranch::Hot && scope.freshness == Freshness::Cold)
            {
                continue;
            }
            branches.push(branch_plan(scan, source, branch, half)?);
            scope.routes.lock().expect("routes lock").push(Route {
                branch,
                source: source.name().to_string(),
                time: range,
                users: users.clone(),
                rollup: None,
            });
        }
        let plan = match branches.len() {
            0 => LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::clone(&scan.projected_schema),
            }),
            1 => branches.pop().expect("one branch"),
            _ => {
                let mut branches = branches.into_iter();
                let first = branches.next().expect("two branches");
                let union = branches
                    .try_fold(LogicalPlanBuilder::from(first), |b, p| b.union(p))?
                    .build()?;
                requalify(union, &scan.table_name, &scan.projected_schema)?
            }
        };
        match scan.fetch {
            Some(n) => LogicalPlanBuilder::from(plan).limit(0, Some(n))?.build(),
            None => Ok(plan),
        }
    }
}

/// The cold and hot sources of a scan of `streams`; `None` for any other scan.
pub(crate) fn streams_branches(
    scan: &TableScan,
) -> Option<(Arc<dyn EventSource>, Arc<dyn EventSource>)> {
    let provider = source_as_provider(&scan.source).ok()?;
    let streams = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<StreamsTable>()?;
    Some((Arc::clone(&streams.cold), Arc::clone(&streams.hot)))
}

/// Names the columns of `plan` as the scan of `streams` did (`table.column`).
fn requalify(
    plan: LogicalPlan,
    table: &TableReference,
    schema: &datafusion::common::DFSchemaRef,
) -> Result<LogicalPlan> {
    let exprs = plan
        .schema()
        .columns()
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| Expr::Column(c).alias_qualified(Some(table.clone()), f.name()))
        .collect::<Vec<_>>();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
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

impl OptimizerRule for StreamsSplitRule {
    fn name(&self) -> &str {
        "sluice_streams_split"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let scope = QueryScopeOption::of(config);
        rewrite_nodes(plan, |node| {
            let LogicalPlan::TableScan(scan) = node else {
                return Ok(None);
            };
            let Some((cold, hot)) = streams_branches(scan) else {
                return Ok(None);
            };
            let Some(scope) = &scope else {
                return internal_err!("streams planned outside a Sluice query (no watermark)");
            };
            self.split(scope, scan, &cold, &hot).map(Some)
        })
    }
}
