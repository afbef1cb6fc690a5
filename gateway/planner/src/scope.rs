//! The listener scope: for a principal bound to one listener, `user_id = <that listener>` is
//! put on every user-keyed relation of the plan, subqueries included, before any other rule
//! of ours runs. It is part of the plan, never of the SQL text, so no SQL can step around it.
//!
//! The filter decides which rows a result holds, but DataFusion evaluates a filter's
//! conjuncts side by side over a whole batch: a listener's `CAST(track_uri AS INT) = 1`
//! would be computed over the other listeners' rows of a batch too, and its error would
//! quote their values. So, last in the physical plan, [`ListenerRowsRule`] puts a
//! [`ListenerRowsExec`] right above every scan the gateway reads itself: only the listener's
//! rows leave it, before any expression of the query sees them. (ClickHouse evaluates a
//! statement's WHERE over whole granules, so no cast that parses a string, whose error would
//! quote the value, is sent to it: see the ClickHouse connector's pushdown.)

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Filter, LogicalPlan, TableScan, lit};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::source_reads::only_child;
use crate::streams::QueryScopeOption;

/// The column that says whose a row is.
pub(crate) const USER_COLUMN: &str = "user_id";

/// Puts a listener's filter on every relation that has a `user_id` column.
#[derive(Debug)]
pub(crate) struct ListenerScopeRule {
    user_id: Arc<str>,
}

impl ListenerScopeRule {
    pub(crate) fn new(user_id: &str) -> Self {
        Self {
            user_id: user_id.into(),
        }
    }

    fn scope(&self, scan: TableScan) -> Result<Transformed<LogicalPlan>> {
        // Any relation with a user_id column is user-keyed: failing closed beats a list of
        // names that a new table could be missing from.
        let Ok(index) = scan.source.schema().index_of(USER_COLUMN) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        if scan
            .projection
            .as_ref()
            .is_some_and(|p| !p.contains(&index))
        {
            return plan_err!(
                "cannot scope {} to the listener: user_id is projected away",
                scan.table_name
            );
        }
        let column = Column::new(Some(scan.table_name.clone()), USER_COLUMN);
        let predicate = datafusion::logical_expr::Expr::Column(column).eq(lit(&*self.user_id));
        let scan = Arc::new(LogicalPlan::TableScan(scan));
        Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
            predicate, scan,
        )?)))
    }
}

impl AnalyzerRule for ListenerScopeRule {
    fn name(&self) -> &str {
        "sluice_listener_scope"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) => self.scope(scan),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }
}

/// Puts a [`ListenerRowsExec`] above each scan of a listener's query that the gateway reads
/// itself and that has a `user_id` column: table files (Parquet), and every source read
/// under a [`crate::source_reads::SourceReadExec`] but ClickHouse's statements (whose
/// output columns are the statement's, and whose rows ClickHouse filtered first).
#[derive(Debug, Default)]
pub(crate) struct ListenerRowsRule;

impl PhysicalOptimizerRule for ListenerRowsRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let listener = config
            .extensions
            .get::<QueryScopeOption>()
            .and_then(|s| s.0.listener.clone());
        match listener {
            Some(user) => guard(plan, &user, false),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "sluice_listener_rows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn guard(
    node: Arc<dyn ExecutionPlan>,
    user: &Arc<str>,
    under_source_read: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    let children = node.children();
    if children.is_empty() {
        let file_scan = node
            .downcast_ref::<DataSourceExec>()
            .is_some_and(|d| d.data_source().is::<FileScanConfig>());
        let read = file_scan
            || node.name() == "RedisScanExec"
            || (under_source_read && node.name() != "ClickHouseStatementExec");
        return match node.schema().index_of(USER_COLUMN) {
            Ok(column) if read => Ok(Arc::new(ListenerRowsExec {
                input: node,
                user: Arc::clone(user),
                column,
            })),
            _ => Ok(node),
        };
    }
    let below = under_source_read || node.name() == "SourceReadExec";
    let children = children
        .into_iter()
        .map(|c| guard(Arc::clone(c), user, below))
        .collect::<Result<Vec<_>>>()?;
    replace_children_if_necessary(node, children)
}

/// Passes on only the rows of one listener (`user_id` equal to `user`; see the module).
#[derive(Debug)]
pub(crate) struct ListenerRowsExec {
    input: Arc<dyn ExecutionPlan>,
    user: Arc<str>,
    /// Where `user_id` is in the input's rows.
    column: usize,
}

impl DisplayAs for ListenerRowsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListenerRowsExec: user_id={}", self.user)
    }
}

impl ExecutionPlan for ListenerRowsExec {
    fn name(&self) -> &'static str {
        "ListenerRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            input: only_child(children, "ListenerRowsExec")?,
            user: Arc::clone(&self.user),
            column: self.column,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let (user, column) = (Arc::clone(&self.user), self.column);
        let rows = input.map(move |batch| listener_rows(batch?, column, &user));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
    }
}

/// The rows of `batch` whose `user_id` (at `column`) is `user`.
fn listener_rows(batch: RecordBatch, column: usize, user: &str) -> Result<RecordBatch> {
    let ids = batch.column(column);
    let user = ScalarValue::Utf8(Some(user.to_string())).cast_to(ids.data_type())?;
    let mine = eq(ids, &user.to_scalar()?)?;
    // Sources that read one listener's key (Redis, the hot store) give only theirs.
    if mine.true_count() == batch.num_rows() {
        return Ok(batch);
    }
    Ok(filter_record_batch(&batch, &mine)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            USER_COLUMN,
            DataType::Utf8,
            false,
        )]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(ids.to_vec()))]).unwrap()
    }

    #[test]
    fn only_the_listeners_rows_pass() {
        let mixed = listener_rows(batch(&["u0001", "u0002", "u0003", "u0002"]), 0, "u0002");
        let ids = mixed.unwrap();
        let ids: Vec<_> = ids.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids, ["u0002", "u0002"]);
        let none = listener_rows(batch(&["u0001"]), 0, "u0002").unwrap();
        assert_eq!(none.num_rows(), 0);
        let all = listener_rows(batch(&["u0002"]), 0, "u0002").unwrap();
        assert_eq!(all.num_rows(), 1);
    }
}
