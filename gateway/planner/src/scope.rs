//! The listener scope: for a principal bound to one listener, `user_id = <that listener>` is
//! put on every user-keyed relation of the plan, subqueries included, before any other rule
//! of ours runs (`rules::listener_scope`). It is part of the plan, never of the SQL text, so
//! no SQL can step around it.
//!
//! The filter decides which rows a result holds, but DataFusion evaluates a filter's
//! conjuncts side by side over a whole batch: a listener's `CAST(track_uri AS INT) = 1`
//! would be computed over the other listeners' rows of a batch too, and its error would
//! quote their values. So, last in the physical plan, `rules::listener_rows` puts a
//! [`ListenerRowsExec`] right above every scan the gateway reads itself: only the listener's
//! rows leave it, before any expression of the query sees them. (ClickHouse evaluates a
//! statement's WHERE over whole granules, so no cast that parses a string, whose error would
//! quote the value, is sent to it: see the ClickHouse connector's pushdown.)

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::source_reads::only_child;

/// The column that says whose a row is.
pub(crate) const USER_COLUMN: &str = "user_id";

/// Passes on only the rows of one listener (`user_id` equal to `user`; see the module).
#[derive(Debug)]
pub(crate) struct ListenerRowsExec {
    input: Arc<dyn ExecutionPlan>,
    user: Arc<str>,
    /// Where `user_id` is in the input's rows.
    column: usize,
}

impl ListenerRowsExec {
    /// Passes on the rows of `input` whose column `column` (`user_id`) is `user`.
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, user: Arc<str>, column: usize) -> Self {
        Self {
            input,
            user,
            column,
        }
    }
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
