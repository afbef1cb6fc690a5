use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Explain, LogicalPlan, Statement};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionConfig;
use sluice_auth::{Principal, Role};
use sluice_catalog::{CATALOG, SCHEMA, STREAMS};
use sluice_connector_api::{Sources, Watermark};
use sluice_metrics::PHYSICAL_PLAN_CACHE;
use tracing::debug;

use crate::catalog_table::CatalogTable;
use crate::error::{Error, Result};
use crate::executor::QueryExecutor;
use crate::explain::with_route_row;
use crate::information_schema::{INFORMATION_SCHEMA, information_schema};
use crate::ingest::{EventIngest, IngestTarget};
use crate::manifest::Manifest;
use crate::memory::MemoryBudget;
use crate::placeholders::number_question_marks;
use crate::plan_cache::{
    DEFAULT_PLAN_CACHE_ENTRIES, PlanCache, PlanKey, RoutedPlan, physical_not_reusable, reusable,
};
use crate::query_planner::{self, SluiceQueryPlanner};
use crate::query_stop::{self, QueryStop};
use crate::rollups::AvailableRollup;
use crate::route::{QueryScope, QueryScopeOption, RollupChoice, Route};
use crate::rules;
use crate::settings::SessionSettings;
use crate::streams::StreamsTable;

/// Plans SQL against the sources. One per process, shared by every session.
#[derive(Debug)]
pub struct QueryEngine {
    /// The state every query starts from: catalog, functions, default options.
    base: SessionState,
    watermark: Arc<dyn Watermark>,
    ingest: EventIngest,
    /// Where plans run; `None`: on the caller's runtime (tests).
    executor: Option<QueryExecutor>,
    /// The operator memory all queries share.
    memory: Arc<MemoryBudget>,
    /// Routed plans of statements that may come again.
    pub(crate) plans: Arc<PlanCache>,
}

/// Where a query's memory pool comes from: the process's budget, for one principal.
#[derive(Debug)]
struct QueryPool {
    budget: Arc<MemoryBudget>,
    owner: String,
    limit_bytes: Option<u64>,
}

/// One planned statement.
#[derive(Debug)]
pub enum PlannedStatement {
    /// A statement that returns rows (SELECT, EXPLAIN, DESCRIBE, ...).
    Query(Box<Query>),
    /// `SET name = value`, already validated; the caller records it in its session.
    Set { name: String, value: String },
}

/// A query planned for one principal, ready to bind parameters and run.
#[derive(Debug)]
pub struct Query {
    state: SessionState,
    /// Whose memory pool its operators draw from, and its limit.
    pool: QueryPool,
    plan: LogicalPlan,
    /// `plan` federated once optimized; `None` for EXPLAIN, which DataFusion plans through
    /// the query planner.
    federated: Option<LogicalPlan>,
    scope: Arc<QueryScope>,
    /// Whether `plan` has been through the optimizer (routes and rollups chosen).
    pub(crate) optimized: bool,
    /// The statement as the client sent it (for the audit log).
    sql: Arc<str>,
    executor: Option<QueryExecutor>,
    /// Where its plans are kept, if they may be reused: the routed plan once optimized (if
    /// it was not taken from there), the physical plan once planned (if none was kept).
    keep_as: Option<(Arc<PlanCache>, PlanKey)>,
    /// The kept physical plan of `federated`, never run.
    physical: Option<Arc<dyn ExecutionPlan>>,
}

fn internal(e: datafusion::error::DataFusionError) -> Error {
    Error::Execute(e)
}

impl QueryEngine {
    /// Registers `sluice.public` (streams and the entity tables) and
    /// `sluice.information_schema` over `sources`.
    pub fn new(sources: Sources) -> Result<Self> {
        let public = MemorySchemaProvider::new();
        public
            .register_table(
                STREAMS.to_string(),
                Arc::new(StreamsTable::new(
                    Arc::clone(&sources.hot),
                    Arc::clone(&sources.cold),
                )),
            )
            .map_err(internal)?;
        let mut remote_entities = sources.remote_entities;
        for (name, table) in sources.entities {
            let remote = remote_entities
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| remote_entities.swap_remove(i).1);
            let key = sluice_catalog::table(&name)
                .filter(|t| t.primary_key.len() == 1)
                .map(|t| t.primary_key[0].to_string());
            public
                .register_table(name, Arc::new(CatalogTable::new(table, remote, key)))
                .map_err(internal)?;
        }
        // In the order the source lists them (fewest rows first).
        let mut rollups = Vec::with_capacity(sources.rollups.len());
        for (def, table) in sources.rollups {
            rollups.push(AvailableRollup {
                def,
                federated: crate::federation::remote_name(&table).is_some(),
                table: Arc::clone(&table),
                source: sources.cold.name().to_string(),
            });
            public
                .register_table(def.table.to_string(), table)
                .map_err(internal)?;
        }
        let catalog = MemoryCatalogProvider::new();
        catalog
            .register_schema(SCHEMA, Arc::new(public))
            .map_err(internal)?;
        catalog
            .register_schema(INFORMATION_SCHEMA, information_schema().map_err(internal)?)
            .map_err(internal)?;
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(CATALOG.to_string(), Arc::new(catalog));

        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false);
        // The route's rules, in the order `rules` lists and explains, after DataFusion's;
        // the analyzer's are added per query (`plan`), the federation step is `optimize`'s.
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_catalog_list(Arc::new(catalogs) as Arc<dyn CatalogProviderList>)
            .with_query_planner(Arc::new(SluiceQueryPlanner));
        for rule in rules::logical_rules(rollups) {
            builder = builder.with_optimizer_rule(rule);
        }
        for rule in rules::physical_rules() {
            builder = builder.with_physical_optimizer_rule(rule);
        }
        let base = builder.build();
        Ok(Self {
            base,
            ingest: EventIngest {
                hot: sources.hot,
                watermark: Arc::clone(&sources.watermark),
            },
            watermark: sources.watermark,
            executor: None,
            memory: MemoryBudget::new(None),
            plans: Arc::new(PlanCache::new(DEFAULT_PLAN_CACHE_ENTRIES)),
        })
    }

    /// Runs every query's plan on `executor`'s runtime rather than the caller's.
    pub fn with_executor(mut self, executor: QueryExecutor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Holds the operator memory of all queries together to `budget`.
    pub fn with_memory_budget(mut self, budget: Arc<MemoryBudget>) -> Self {
        self.memory = budget;
        self
    }

    /// Keeps at most `entries` routed plans for statements that come again (0: none).
    pub fn with_plan_cache(mut self, entries: usize) -> Self {
        self.plans = Arc::new(PlanCache::new(entries));
        self
    }

    /// Checks that `principal` may write events into `target`; call before reading the
    /// data. Only admins ingest, and only into `streams`.
    pub fn check_ingest(&self, principal: &Principal, target: &IngestTarget) -> Result<()> {
        if principal.role() != Role::Admin {
            return Err(Error::Forbidden(format!(
                "{} is a {}; only admins ingest",
                principal.name(),
                principal.role()
            )));
        }
        target.check()
    }

    /// Writes one batch of events (columns of `streams`, by name) into the hot store,
    /// after [`Self::check_ingest`]. Returns how many were new; writing the same event
    /// again is harmless, so a failed ingest can be retried whole.
    pub async fn ingest(&self, batch: &RecordBatch) -> Result<u64> {
        self.ingest.write(batch).await
    }

    /// Plans one SQL statement for `principal` with its session's `settings`. Reads `W` once;
    /// every branch of the query uses that value.
    pub async fn plan(
        &self,
        principal: &Principal,
        settings: &SessionSettings,
        sql: &str,
    ) -> Result<PlannedStatement> {
        self.plan_at(principal, settings, sql, None).await
    }

    /// [`Self::plan`] at a given `W` (`watermark_ms`), that of the query a ticket was issued
    /// for (by this replica or another), so that its results are the ones planned then;
    /// `None` reads the current `W`.
    pub async fn plan_at(
        &self,
        principal: &Principal,
        settings: &SessionSettings,
        sql: &str,
        watermark_ms: Option<i64>,
    ) -> Result<PlannedStatement> {
        let mut state = self.base.clone();
        settings.apply(state.config_mut().options_mut())?;
        let original_sql: Arc<str> = sql.into();
        for rule in rules::analyzer_rules(principal.scope()) {
            state.add_analyzer_rule(rule);
        }
        if principal.scope().is_some() {
            // One listener's rows are few: one partition per operator. More would hash and
            // copy every row of the catalog into partitions for each join (a fifth of the
            // gateway's CPU on catalog-join questions, measured with perf) and hand batches
            // between threads to no gain; the hot and cold reads still run side by side.
            let options = state.config_mut().options_mut();
            options.execution.target_partitions = 1;
            // No dynamic filters: the sources of a listener's rows take none (ClickHouse is
            // sent fixed SQL, Redis a key and a range), and without them the physical plan
            // can be kept for the next run (see plan_cache).
            let optimizer = &mut options.optimizer;
            optimizer.enable_dynamic_filter_pushdown = false;
            optimizer.enable_topk_dynamic_filter_pushdown = false;
            optimizer.enable_join_dynamic_filter_pushdown = false;
            optimizer.enable_aggregate_dynamic_filter_pushdown = false;
            // A Parquet row filter would compute the query's own predicates over the other
            // listeners' rows of a row group, before `ListenerRowsExec` drops them.
            options.execution.parquet.pushdown_filters = false;
        }
        // Read before parsing, so that a statement planned before at this W skips planning.
        // A failed read only matters to a query: it is reported below, after parsing.
        let watermark = match watermark_ms {
            Some(pinned) => Ok(pinned),
            None => self.watermark.current_ms().await,
        };
        let key = watermark.as_ref().ok().map(|&watermark_ms| PlanKey {
            sql: original_sql.to_string(),
            settings: settings.clone(),
            principal: principal.name().to_string(),
            scope: principal.scope().map(str::to_string),
            watermark_ms,
        });
        if let Some(key) = &key
            && let Some(routed) = self.plans.get(key)
        {
            let RoutedPlan {
                plan,
                federated,
                routes,
                rollups,
                physical,
            } = routed;
            let mut query = self.query(
                state,
                principal,
                original_sql,
                settings,
                key.watermark_ms,
                plan,
            );
            query.keep_as = Some((Arc::clone(&self.plans), key.clone()));
            query.physical = physical;
            return Ok(PlannedStatement::Query(Box::new(
                query.routed(federated, routes, rollups),
            )));
        }
        let sql = number_question_marks(sql).map_err(Error::Plan)?;
        let dialect = state.config().options().sql_parser.dialect;
        let statement = match state.sql_to_statement(&sql, &dialect) {
            // Parsing refuses one thing as "not implemented": several statements in one text,
            // which is the client's to split.
            Err(datafusion::error::DataFusionError::NotImplemented(_)) => {
                return Err(Error::Plan(datafusion::error::DataFusionError::Plan(
                    "the text holds several statements: send one at a time (Sluice runs each \
                     query on its own)"
                        .into(),
                )));
            }
            parsed => parsed.map_err(|e| Error::Plan(at_the_end(e, &sql)))?,
        };
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(Error::Plan)?;
        match &plan {
            LogicalPlan::Ddl(ddl) => {
                return Err(Error::ReadOnly {
                    statement: ddl.name().to_string(),
                });
            }
            LogicalPlan::Dml(dml) => {
                return Err(Error::ReadOnly {
                    statement: dml.op.name().to_string(),
                });
            }
            LogicalPlan::Copy(_) => {
                return Err(Error::ReadOnly {
                    statement: "COPY".to_string(),
                });
            }
            LogicalPlan::Statement(Statement::SetVariable(set)) => {
                let mut probe = settings.clone();
                probe.set(&set.variable, &set.value)?;
                return Ok(PlannedStatement::Set {
                    name: set.variable.clone(),
                    value: set.value.clone(),
                });
            }
            // Row counts and statistics of the sources cover every listener: a listener
            // gets the plan (EXPLAIN), not them.
            LogicalPlan::Analyze(_) | LogicalPlan::Explain(Explain { verbose: true, .. })
                if principal.scope().is_some() =>
            {
                return Err(Error::Forbidden(format!(
                    "EXPLAIN ANALYZE and EXPLAIN VERBOSE show source row counts and statistics \
                     beyond listener {}; use EXPLAIN",
                    principal.scope().unwrap_or_default()
                )));
            }
            LogicalPlan::Statement(other) => {
                return Err(Error::Plan(
                    datafusion::error::DataFusionError::NotImplemented(format!(
                        "{} statements are not supported; Sluice runs each query on its own",
                        other.name()
                    )),
                ));
            }
            _ => {}
        }
        let watermark_ms = watermark.map_err(Error::Execute)?;
        let keep_as = key
            .filter(|_| reusable(&plan))
            .map(|key| (Arc::clone(&self.plans), key));
        let mut query = self.query(state, principal, original_sql, settings, watermark_ms, plan);
        query.keep_as = keep_as;
        Ok(PlannedStatement::Query(Box::new(query)))
    }

    /// A query of `plan` (not yet optimized) at `watermark_ms`, of `principal`.
    fn query(
        &self,
        mut state: SessionState,
        principal: &Principal,
        sql: Arc<str>,
        settings: &SessionSettings,
        watermark_ms: i64,
        plan: LogicalPlan,
    ) -> Query {
        // The query's memory pool is made when it runs (`execute`): planning alone
        // (CreatePreparedStatement, GetSchema) needs none.
        let pool = QueryPool {
            budget: Arc::clone(&self.memory),
            owner: principal.name().to_string(),
            limit_bytes: principal.limits().query_memory_bytes,
        };
        let scope = Arc::new(QueryScope {
            watermark_ms,
            route: settings.route(),
            freshness: settings.freshness(),
            routes: Mutex::new(Vec::new()),
            rollups: Mutex::new(Vec::new()),
            listener: principal.scope().map(Arc::from),
        });
        // The split of `streams` reads this query's W from its options.
        state
            .config_mut()
            .options_mut()
            .extensions
            .insert(QueryScopeOption(Arc::clone(&scope)));
        Query {
            state,
            pool,
            plan,
            federated: None,
            scope,
            optimized: false,
            sql,
            executor: self.executor.clone(),
            keep_as: None,
            physical: None,
        }
    }
}

impl Query {
    /// This query's plan as kept routed: federated, with its reads as they were recorded.
    fn routed(
        mut self,
        federated: Option<LogicalPlan>,
        routes: Vec<Route>,
        rollups: Vec<RollupChoice>,
    ) -> Self {
        self.federated = federated;
        *self.scope.routes.lock().expect("routes lock") = routes;
        *self.scope.rollups.lock().expect("rollups lock") = rollups;
        self.optimized = true;
        self
    }

    /// The statement as the client sent it.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The `W` this query reads at (ms since the epoch).
    pub fn watermark_ms(&self) -> i64 {
        self.scope.watermark_ms
    }

    /// The schema of the rows the query returns.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// The parameters the statement takes, as fields `$1`, `$2`, ... (type `Null` where the
    /// statement does not fix one). A count of rows (`LIMIT ?`, `OFFSET ?`) is `Int64`, which
    /// DataFusion leaves open: clients that bind by the announced type (the JDBC driver)
    /// could bind nothing to `Null`.
    pub fn parameter_schema(&self) -> Result<SchemaRef> {
        let mut types = self.plan.get_parameter_types().map_err(Error::Plan)?;
        for name in row_count_placeholders(&self.plan) {
            if let Some(t @ None) = types.get_mut(&name) {
                *t = Some(DataType::Int64);
            }
        }
        let mut params: Vec<(usize, String, Option<DataType>)> = types
            .into_iter()
            .map(|(name, t)| {
                let n = name.trim_start_matches('$').parse::<usize>().unwrap_or(0);
                (n, name, t)
            })
            .collect();
        params.sort();
        Ok(Arc::new(Schema::new(
            params
                .into_iter()
                .map(|(_, name, t)| Field::new(name, t.unwrap_or(DataType::Null), true))
                .collect::<Vec<_>>(),
        )))
    }

    /// Substitutes positional parameter values.
    pub fn bind(mut self, values: Vec<ScalarValue>) -> Result<Self> {
        let expected = self.parameter_schema()?.fields().len();
        if values.len() != expected {
            return Err(Error::Parameters(format!(
                "the statement takes {expected} parameter(s), {} given",
                values.len()
            )));
        }
        if expected > 0 {
            self.plan = self
                .plan
                .with_param_values(values)
                .map_err(|e| Error::Parameters(e.strip_backtrace()))?;
        }
        Ok(self)
    }

    /// Chooses the route: runs the optimizer (the split of `streams`, rollups, pushdown),
    /// which fixes `now()` for the query. Call after binding parameters; [`Self::manifest`]
    /// then tells how the result will be computed. [`Self::execute`] does it if not done.
    pub fn optimize(&mut self) -> Result<()> {
        if self.optimized {
            return Ok(());
        }
        if !self
            .plan
            .get_parameter_types()
            .map_err(Error::Plan)?
            .is_empty()
        {
            return Err(Error::Parameters(
                "the statement has parameters; bind values before running it".into(),
            ));
        }
        // Fixes now() and friends for the whole query.
        self.state.mark_start_execution();
        self.plan = self.state.optimize(&self.plan).map_err(Error::Plan)?;
        if !matches!(self.plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
            self.federated = Some(rules::federate(&self.plan, &self.state).map_err(Error::Plan)?);
        }
        self.optimized = true;
        if let Some((plans, key)) = &self.keep_as {
            plans.insert(
                key.clone(),
                RoutedPlan {
                    plan: self.plan.clone(),
                    federated: self.federated.clone(),
                    routes: self.scope.routes.lock().expect("routes lock").clone(),
                    rollups: self.scope.rollups.lock().expect("rollups lock").clone(),
                    physical: None,
                },
            );
        }
        Ok(())
    }

    /// How the result is computed: sources, rollups, `W`, freshness. Complete once the
    /// query is optimized.
    pub fn manifest(&self) -> Manifest {
        Manifest::new(
            self.scope.watermark_ms,
            self.scope.route,
            self.scope.freshness,
            &self.scope.routes.lock().expect("routes lock"),
            &self.scope.rollups.lock().expect("rollups lock"),
        )
    }

    /// Starts the query: physical planning, then its sources, on the engine's executor
    /// when it has one, so the caller answers its client meanwhile (an error of either then
    /// comes as the stream's first item). `EXPLAIN` gains a `sluice_route` row: the route in
    /// words ([`Manifest::describe`]).
    pub async fn execute(mut self) -> Result<(SendableRecordBatchStream, Manifest)> {
        self.optimize()?;
        let manifest = self.manifest();
        let route = matches!(self.plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_))
            .then(|| manifest.describe());
        let schema = self.schema();
        // This query's own pool: the principal's limit, within the process's budget.
        // Sorts, aggregates and joins past it spill or fail, never take the process. It goes
        // into the query's task context only: rebuilding the session state around a new
        // runtime registers every function again (most of the planning time of a small
        // query, measured with perf).
        let pool = self
            .pool
            .budget
            .query_pool(&self.pool.owner, self.pool.limit_bytes);
        let runtime = RuntimeEnvBuilder::from_runtime_env(self.state.runtime_env())
            .with_memory_pool(pool)
            .build_arc()
            .map_err(Error::Execute)?;
        let task_ctx = Arc::new(TaskContext::from(&self.state).with_runtime(runtime));
        let Query {
            state,
            plan,
            federated,
            executor,
            physical,
            keep_as,
            ..
        } = self;
        // Operators spawn their tasks where the plan starts: on the executor's runtime.
        let stop = QueryStop::default();
        let watched_by = stop.clone();
        let start = async move {
            let physical = match (physical, &federated) {
                (Some(kept), _) => {
                    PHYSICAL_PLAN_CACHE.with_label_values(&["hit"]).inc();
                    reset_plan_states(kept)?
                }
                (None, Some(federated)) => {
                    PHYSICAL_PLAN_CACHE.with_label_values(&["miss"]).inc();
                    let physical = query_planner::physical_plan(federated, &state).await?;
                    if let Some((plans, key)) = keep_as {
                        match physical_not_reusable(&physical) {
                            // A copy that never runs: each run resets its own.
                            None => {
                                plans.keep_physical(&key, reset_plan_states(Arc::clone(&physical))?)
                            }
                            Some(why) => debug!(why, "physical plan not kept"),
                        }
                    }
                    physical
                }
                (None, None) => {
                    state
                        .query_planner()
                        .create_physical_plan(&plan, &state)
                        .await?
                }
            };
            debug!(plan = %datafusion::physical_plan::displayable(physical.as_ref()).one_line(), "physical plan");
            // This run's own checks, on its own copy: not in the plan kept above.
            let physical = query_stop::watch(physical, &watched_by)?;
            let stream = execute_stream(physical, task_ctx)?;
            match route {
                Some(route) => with_route_row(stream, &route),
                None => Ok(stream),
            }
        };
        let stream = match &executor {
            Some(executor) => executor.drive(schema, start, stop),
            None => start.await.map_err(Error::Execute)?,
        };
        Ok((stream, manifest))
    }
}

#[cfg(test)]
impl Query {
    /// Its session state and its plan (routed once optimized), for the rules' tests.
    pub(crate) fn state_and_plan(&self) -> (&SessionState, &LogicalPlan) {
        (&self.state, &self.plan)
    }

    /// Its federated plan, once optimized.
    pub(crate) fn federated(&self) -> Option<&LogicalPlan> {
        self.federated.as_ref()
    }
}

/// The placeholders that stand for a count of rows: `LIMIT $n` and `OFFSET $n`.
fn row_count_placeholders(plan: &LogicalPlan) -> Vec<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut names = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Limit(limit) = node {
            for expr in limit.skip.iter().chain(limit.fetch.iter()) {
                if let datafusion::logical_expr::Expr::Placeholder(p) = expr.as_ref() {
                    names.push(p.id.clone());
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

/// A parse error at the end of the text gets the position sqlparser gives every other one
/// (`found: EOF` has none), so that the caller, often a model, knows where the SQL stops short.
fn at_the_end(
    e: datafusion::error::DataFusionError,
    sql: &str,
) -> datafusion::error::DataFusionError {
    use datafusion::error::DataFusionError;
    use datafusion::sql::sqlparser::parser::ParserError;
    match e {
        DataFusionError::SQL(parser, backtrace) => match *parser {
            ParserError::ParserError(message)
                if message.ends_with("found: EOF") && !message.contains("Line:") =>
            {
                let line = sql.lines().count().max(1);
                let column = sql.lines().last().map_or(0, |l| l.chars().count()) + 1;
                DataFusionError::SQL(
                    Box::new(ParserError::ParserError(format!(
                        "{message} at the end of the statement, Line: {line}, Column: {column}"
                    ))),
                    backtrace,
                )
            }
            other => DataFusionError::SQL(Box::new(other), backtrace),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(sql: &str) -> String {
        let e = datafusion::sql::parser::DFParser::parse_sql(sql).unwrap_err();
        at_the_end(e, sql).to_string()
    }

    #[test]
    fn a_statement_that_stops_short_says_where() {
        let text = parse_error("SELECT count(*) FROM streams WHERE");
        assert!(text.contains("Line: 1, Column: 35"), "{text}");
        let text = parse_error("SELECT 1\nFROM");
        assert!(text.contains("Line: 2, Column: 5"), "{text}");
    }

    #[test]
    fn other_parse_errors_keep_sqlparsers_position() {
        let text = parse_error("SELEC 1");
        assert_eq!(text.matches("Line:").count(), 1, "{text}");
    }
}
