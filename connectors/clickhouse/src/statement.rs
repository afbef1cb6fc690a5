//! A federated part's SQL statement, written once. datafusion-federation's own planner
//! writes the SQL of a part again each time its plan runs (table scans renamed to their
//! remote names, the plan unparsed, the AST rewritten): about a tenth of the gateway's CPU
//! for a small question, on the way to ClickHouse. The gateway keeps routed plans for
//! statements asked again, federated parts included; so each part gets a planner of its
//! own ([`StatementPlanner`]) that writes the SQL at the part's first physical planning and
//! hands the same text to every run after ([`ClickHouseStatementExec`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::sql::unparser::Unparser;
use datafusion_federation::schema_cast::SchemaCastScanExec;
use datafusion_federation::sql::{SQLExecutor, SQLFederationPlanner, SQLTableSource};
use datafusion_federation::{FederatedPlanNode, FederationPlanner, get_table_source};

use crate::executor::ClickHouseExecutor;

/// Plans one federated part: its SQL is written at the first call and kept.
pub(crate) struct StatementPlanner {
    executor: ClickHouseExecutor,
    /// datafusion-federation's planner, for a part it must rename tables in.
    renaming: Arc<SQLFederationPlanner>,
    sql: OnceLock<Option<Arc<str>>>,
}

impl fmt::Debug for StatementPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatementPlanner")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

impl StatementPlanner {
    pub(crate) fn new(executor: ClickHouseExecutor, renaming: Arc<SQLFederationPlanner>) -> Self {
        Self {
            executor,
            renaming,
            sql: OnceLock::new(),
        }
    }

    /// The statement ClickHouse runs for `plan`, as datafusion-federation writes it:
    /// ClickHouse's dialect, then the executor's rewrite of the AST. `None` when a table is
    /// read under another name than ClickHouse's (a qualified `sluice.public.tracks`):
    /// renaming it is datafusion-federation's to do, at each run.
    fn write_sql(&self, plan: &LogicalPlan) -> Result<Option<Arc<str>>> {
        if !reads_remote_names(plan)? {
            return Ok(None);
        }
        let plan = with_named_columns(plan)?;
        let mut statement = Unparser::new(self.executor.dialect().as_ref()).plan_to_sql(&plan)?;
        if let Some(mut analyzer) = self.executor.ast_analyzer() {
            statement = analyzer(statement)?;
        }
        Ok(Some(statement.to_string().into()))
    }
}

/// `plan` under a projection of its own columns, each named as in the plan, where its root
/// is an aggregate. DataFusion's unparser writes an aggregate with nothing above it as
/// `SELECT <aggregates>, <groups>`, where the plan's columns are the groups first: the
/// result's columns would come in another order, with names of ClickHouse's choosing
/// (`count()`). With the projection they come in the plan's order, by the plan's names.
fn with_named_columns(plan: &LogicalPlan) -> Result<Cow<'_, LogicalPlan>> {
    if !matches!(plan, LogicalPlan::Aggregate(_)) {
        return Ok(Cow::Borrowed(plan));
    }
    let columns = plan
        .schema()
        .columns()
        .into_iter()
        .map(|column| {
            let name = column.name.clone();
            Expr::Column(column).alias(name)
        })
        .collect();
    let projection = Projection::try_new(columns, Arc::new(plan.clone()))?;
    Ok(Cow::Owned(LogicalPlan::Projection(projection)))
}

/// True if every table `plan` reads is named as in ClickHouse, so datafusion-federation's
/// renaming of table scans would change nothing.
fn reads_remote_names(plan: &LogicalPlan) -> Result<bool> {
    let mut same = true;
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let remote = get_table_source(&scan.source)?.and_then(|source| {
                (source.as_ref() as &dyn std::any::Any)
                    .downcast_ref::<SQLTableSource>()
                    .map(SQLTableSource::table_reference)
            });
            if remote.as_ref() != Some(&scan.table_name) {
                tracing::debug!(local = %scan.table_name, remote = ?remote, "renamed table: SQL written at each run");
                same = false;
            }
        }
        Ok(if same {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(same)
}

#[async_trait]
impl FederationPlanner for StatementPlanner {
    async fn plan_federation(
        &self,
        node: &FederatedPlanNode,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let sql = match self.sql.get() {
            Some(sql) => sql.clone(),
            None => {
                let sql = self.write_sql(node.plan())?;
                self.sql.get_or_init(|| sql).clone()
            }
        };
        let Some(sql) = sql else {
            return self.renaming.plan_federation(node, session_state).await;
        };
        let schema: SchemaRef = Arc::new(node.plan().schema().as_arrow().clone());
        let exec = Arc::new(ClickHouseStatementExec::new(
            sql,
            self.executor.clone(),
            Arc::clone(&schema),
        ));
        // ClickHouse's types as the plan announced them (as datafusion-federation does).
        Ok(Arc::new(SchemaCastScanExec::new(exec, schema)))
    }
}

/// Runs one kept statement in ClickHouse and streams its result.
#[derive(Debug)]
pub(crate) struct ClickHouseStatementExec {
    sql: Arc<str>,
    executor: ClickHouseExecutor,
    props: Arc<PlanProperties>,
}

impl ClickHouseStatementExec {
    fn new(sql: Arc<str>, executor: ClickHouseExecutor, schema: SchemaRef) -> Self {
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            sql,
            executor,
            props,
        }
    }
}

impl DisplayAs for ClickHouseStatementExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ClickHouseStatementExec: {} sql={}",
            self.executor.compute_context().unwrap_or_default(),
            self.sql
        )
    }
}

impl ExecutionPlan for ClickHouseStatementExec {
    fn name(&self) -> &str {
        "ClickHouseStatementExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.executor.execute(&self.sql, self.schema(), &[])
    }
}
