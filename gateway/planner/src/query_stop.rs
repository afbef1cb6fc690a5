//! Stopping a query whose reader went away (a cancel, a timeout, a client gone). Dropping
//! the stream stops its task at its next yield, but a join can compute for minutes without
//! one: a nested loop join probes every buffered row against each batch of its other side
//! inside one poll (a hash join every match of a batch), returning only the pairs its
//! filter passes, and an operator above a join keeps pulling the batches the join has
//! ready. So each run's plan is watched by a [`QueryStop`]: the joins' filters check it
//! for every chunk of pairs they test, and every operator that can return more rows than it
//! reads (joins, recursive queries, unnest) checks it for every batch it returns. Once
//! stopped, the next check ends the run with an error nobody reads.
//!
//! The watch is added to each run's own copy of the physical plan, after the copy kept for
//! statements that come again: the kept plan never holds a run's stop.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::datatypes::{FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, exec_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::source_reads::only_child;

/// Whether a run was stopped; shared by the run's operators and whoever reads its stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryStop(Arc<AtomicBool>);

impl QueryStop {
    /// Stops the run: its next check fails.
    pub(crate) fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn check(&self) -> Result<()> {
        if self.0.load(Ordering::Relaxed) {
            return exec_err!("the query was stopped: its reader went away");
        }
        Ok(())
    }
}

/// Operators that may return far more rows than they read, or compute long between two
/// reads of their inputs: the ones [`watch`] checks after.
fn may_outgrow_inputs(node: &dyn ExecutionPlan) -> bool {
    let name = node.name();
    name.ends_with("JoinExec") || matches!(name, "RecursiveQueryExec" | "UnnestExec")
}

/// `plan` with checks of `stop`: its joins' filters check it for every chunk of pairs
/// they test, and the operators that may outgrow their inputs for every batch.
pub(crate) fn watch(
    plan: Arc<dyn ExecutionPlan>,
    stop: &QueryStop,
) -> Result<Arc<dyn ExecutionPlan>> {
    let children = plan
        .children()
        .into_iter()
        .map(|child| watch(Arc::clone(child), stop))
        .collect::<Result<Vec<_>>>()?;
    // Rebuilt only where a child changed, keeping the properties (the checks change none).
    let mut node = replace_children_if_necessary(plan, children)?;
    // A join evaluates its filter over each chunk of pairs it forms, emitting only the pairs
    // that pass: with none passing, it may form billions without returning.
    if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
        && let Some(filter) = join.filter()
    {
        node = Arc::new(NestedLoopJoinExec::try_new(
            Arc::clone(join.left()),
            Arc::clone(join.right()),
            Some(checked(filter, stop)),
            join.join_type(),
            join.projection().as_ref().map(|p| p.to_vec()),
        )?);
    } else if let Some(join) = node.downcast_ref::<HashJoinExec>()
        && let Some(filter) = join.filter()
    {
        node = join
            .builder()
            .with_filter(Some(checked(filter, stop)))
            .build_exec()?;
    }
    if may_outgrow_inputs(node.as_ref()) {
        node = Arc::new(StopCheckExec {
            input: node,
            stop: stop.clone(),
        });
    }
    Ok(node)
}

/// `filter`, checking `stop` each time it is evaluated.
fn checked(filter: &JoinFilter, stop: &QueryStop) -> JoinFilter {
    JoinFilter::new(
        Arc::new(StopCheckExpr {
            inner: Arc::clone(filter.expression()),
            stop: stop.clone(),
        }),
        filter.column_indices().to_vec(),
        Arc::clone(filter.schema()),
    )
}

/// Passes its input's batches through, ending with an error once the run is stopped.
#[derive(Debug)]
struct StopCheckExec {
    input: Arc<dyn ExecutionPlan>,
    stop: QueryStop,
}

impl DisplayAs for StopCheckExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StopCheckExec")
    }
}

impl ExecutionPlan for StopCheckExec {
    fn name(&self) -> &'static str {
        "StopCheckExec"
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
            input: only_child(children, "StopCheckExec")?,
            stop: self.stop.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let stop = self.stop.clone();
        let checked = input.map(move |batch| {
            stop.check()?;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, checked)))
    }
}

/// An expression evaluated as `inner`, failing once the run is stopped. Shown as `inner`.
#[derive(Debug)]
struct StopCheckExpr {
    inner: Arc<dyn PhysicalExpr>,
    stop: QueryStop,
}

impl PartialEq for StopCheckExpr {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref() == other.inner.as_ref() && Arc::ptr_eq(&self.stop.0, &other.stop.0)
    }
}

impl Eq for StopCheckExpr {}

impl Hash for StopCheckExpr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl fmt::Display for StopCheckExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl PhysicalExpr for StopCheckExpr {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        self.stop.check()?;
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [inner] = <[_; 1]>::try_from(children)
            .map_err(|c| datafusion::common::internal_datafusion_err!("{} children", c.len()))?;
        Ok(Arc::new(Self {
            inner,
            stop: self.stop.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// Joins of two tables of `rows` rows (`x` from 0, `k` always 0) with a filter no pair
    /// passes: they take hours (`rows`² evaluations) at 200,000 rows.
    const ENDLESS: [&str; 2] = [
        "SELECT count(*) FROM a, b WHERE a.x + b.x = -1",
        "SELECT count(*) FROM a JOIN b ON a.k = b.k WHERE a.x + b.x = -1",
    ];

    async fn endless_join(sql: &str, rows: i64) -> (SessionContext, Arc<dyn ExecutionPlan>) {
        let config = SessionConfig::new().with_target_partitions(1);
        let ctx = SessionContext::new_with_config(config);
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("k", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(Int64Array::from_iter_values((0..rows).map(|_| 0))),
            ],
        )
        .unwrap();
        for name in ["a", "b"] {
            ctx.register_batch(name, batch.clone()).unwrap();
        }
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        (ctx, plan)
    }

    #[tokio::test]
    async fn the_plan_shows_the_same_but_for_the_checks() {
        let (_, plan) = endless_join(ENDLESS[0], 10).await;
        let watched = watch(Arc::clone(&plan), &QueryStop::default()).unwrap();
        let lines = |p: &Arc<dyn ExecutionPlan>| -> Vec<String> {
            let text = displayable(p.as_ref()).indent(false).to_string();
            text.lines().map(|l| l.trim().to_string()).collect()
        };
        let after = lines(&watched);
        // One check above the join; its filter shown as before.
        assert_eq!(
            after.iter().filter(|l| *l == "StopCheckExec").count(),
            1,
            "{after:#?}"
        );
        let unchecked: Vec<String> = after.into_iter().filter(|l| l != "StopCheckExec").collect();
        assert_eq!(unchecked, lines(&plan));
        assert!(
            unchecked
                .iter()
                .any(|l| l.contains("filter=x@0 + x@1 = -1")),
            "{unchecked:#?}"
        );
    }

    #[tokio::test]
    async fn a_watched_run_answers_as_before() {
        for (sql, count) in [
            (ENDLESS[1], 0),
            (
                "SELECT count(*) FROM a JOIN b ON a.k = b.k WHERE a.x < b.x",
                4950,
            ),
            ("SELECT count(*) FROM a, b WHERE a.x + b.x = 3", 4),
        ] {
            let (ctx, plan) = endless_join(sql, 100).await;
            let watched = watch(plan, &QueryStop::default()).unwrap();
            let batches = datafusion::physical_plan::collect(watched, ctx.task_ctx())
                .await
                .unwrap();
            let counted = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
            assert_eq!(counted.unwrap().value(0), count, "{sql}");
        }
    }

    /// Each join runs on a thread of its own, as a query's plan on the query runtime; it
    /// ends soon after its stop, though it never yields in between.
    #[test]
    fn a_stopped_join_ends_within_a_chunk_of_pairs() {
        for sql in ENDLESS {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_time()
                .build()
                .unwrap();
            let (ctx, plan) = runtime.block_on(endless_join(sql, 200_000));
            let stop = QueryStop::default();
            let watched = watch(plan, &stop).unwrap();
            let run = runtime.spawn(datafusion::physical_plan::collect(watched, ctx.task_ctx()));
            std::thread::sleep(Duration::from_millis(300));
            assert!(!run.is_finished(), "{sql}: ended by itself");
            let stopped = Instant::now();
            stop.stop();
            let waited = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), run).await });
            let Ok(ended) = waited else {
                runtime.shutdown_background();
                panic!("{sql}: still runs 10 s after its stop");
            };
            let took = stopped.elapsed();
            let error = ended.unwrap().unwrap_err().to_string();
            assert!(error.contains("the query was stopped"), "{sql}: {error}");
            assert!(took < Duration::from_secs(5), "{sql}: took {took:?}");
        }
    }
}
