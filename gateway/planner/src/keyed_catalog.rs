//! A catalog table indexed by its key, and joins with it by lookup. A listener's rows joined
//! with `tracks` (or `artists`) on its key hash every one of the catalog's rows for each
//! query (50,000 tracks, most of the gateway's CPU for a small question with a join), to
//! keep the few that match. The catalog does not change while Sluice runs, so each table
//! keeps an index of its rows by key ([`KeyedCatalog`], built at its first read, and read
//! through [`KeyedScanExec`]), and `rules::catalog_lookup` turns such a hash join into
//! [`CatalogLookupExec`]: one index lookup per row of the other side.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{
    cast, concat_batches, filter, filter_record_batch, is_not_null, take,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinType, NullEquality, Result, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, StatisticsArgs,
};
use futures::StreamExt;

use crate::source_reads::only_child;

/// A catalog table's rows, all in one batch, and where each key is.
#[derive(Debug)]
pub(crate) struct KeyedCatalog {
    rows: RecordBatch,
    /// The key column's index in `rows`.
    key: usize,
    index: HashMap<String, u32>,
}

impl KeyedCatalog {
    /// The index of `batches` by their column `key`; `None` if a key is null or repeats
    /// (a lookup must find at most one row, as the join would).
    pub(crate) fn build(schema: &SchemaRef, batches: &[RecordBatch], key: &str) -> Option<Self> {
        let rows = concat_batches(schema, batches).ok()?;
        let key = schema.index_of(key).ok()?;
        let keys = cast(rows.column(key), &DataType::Utf8).ok()?;
        let keys = keys.as_string::<i32>();
        let mut index = HashMap::with_capacity(keys.len());
        for (row, k) in keys.iter().enumerate() {
            if index
                .insert(k?.to_string(), u32::try_from(row).ok()?)
                .is_some()
            {
                return None;
            }
        }
        Some(Self { rows, key, index })
    }

    /// For each key, the catalog row holding it (null where none does).
    fn rows_of(&self, keys: &ArrayRef) -> Result<UInt32Array> {
        let keys = cast(keys, &DataType::Utf8)?;
        Ok(keys
            .as_string::<i32>()
            .iter()
            .map(|k| k.and_then(|k| self.index.get(k).copied()))
            .collect())
    }
}

/// A scan of a catalog table that has its [`KeyedCatalog`]: reads like the scan it wraps,
/// and lets `rules::catalog_lookup` find the table under a join.
#[derive(Debug)]
pub(crate) struct KeyedScanExec {
    input: Arc<dyn ExecutionPlan>,
    catalog: Arc<KeyedCatalog>,
    /// The catalog columns the scan returns, in order.
    columns: Vec<usize>,
}

impl KeyedScanExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        catalog: Arc<KeyedCatalog>,
        projection: Option<&Vec<usize>>,
    ) -> Self {
        let columns = match projection {
            Some(p) => p.clone(),
            None => (0..catalog.rows.num_columns()).collect(),
        };
        Self {
            input,
            catalog,
            columns,
        }
    }
}

impl DisplayAs for KeyedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyedScanExec")
    }
}

impl ExecutionPlan for KeyedScanExec {
    fn name(&self) -> &'static str {
        "KeyedScanExec"
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
        let input = only_child(children, "KeyedScanExec")?;
        Ok(Arc::new(Self {
            input,
            catalog: Arc::clone(&self.catalog),
            columns: self.columns.clone(),
        }))
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        match input_stats.first() {
            Some(stats) => Ok(Arc::clone(stats)),
            None => Ok(Arc::new(Statistics::new_unknown(&self.schema()))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// Joins each row of its input with the catalog row of the same key (see the module).
#[derive(Debug)]
pub(crate) struct CatalogLookupExec {
    input: Arc<dyn ExecutionPlan>,
    lookup: Arc<Lookup>,
    props: Arc<PlanProperties>,
}

/// What a [`CatalogLookupExec`] does to each batch of its input.
#[derive(Debug)]
struct Lookup {
    /// The input's side of the key.
    input_key: Arc<dyn PhysicalExpr>,
    catalog: Arc<KeyedCatalog>,
    /// The catalog columns the join's right side had.
    columns: Vec<usize>,
    /// Inner (rows without a match dropped) or left (kept, with nulls).
    keep_unmatched: bool,
    /// The join's output columns, from its input columns then the catalog's.
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
}

impl CatalogLookupExec {
    /// The lookup that answers `join` exactly, if there is one: see `rules::catalog_lookup`.
    pub(crate) fn try_from_join(join: &HashJoinExec) -> Option<Self> {
        let scan = join.right().downcast_ref::<KeyedScanExec>()?;
        let keep_unmatched = match join.join_type() {
            JoinType::Inner => false,
            JoinType::Left => true,
            _ => return None,
        };
        let [(input_key, catalog_key)] = join.on() else {
            return None;
        };
        let on_key = catalog_key
            .downcast_ref::<Column>()
            .is_some_and(|c| scan.columns.get(c.index()) == Some(&scan.catalog.key));
        let single = join.properties().partitioning.partition_count() == 1;
        if !on_key
            || join.filter().is_some()
            || join.null_equality() != NullEquality::NullEqualsNothing
            || join.null_aware
            || join.fetch().is_some()
            || join.properties().output_ordering().is_some()
            || !single
            || !matches!(join.partition_mode(), PartitionMode::CollectLeft)
        {
            return None;
        }
        let mut input = Arc::clone(join.left());
        if input.output_partitioning().partition_count() > 1 {
            input = Arc::new(CoalescePartitionsExec::new(input));
        }
        let schema = join.schema();
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let lookup = Lookup {
            input_key: Arc::clone(input_key),
            catalog: Arc::clone(&scan.catalog),
            columns: scan.columns.clone(),
            keep_unmatched,
            projection: join.projection.as_ref().map(|p| p.to_vec()),
            schema,
        };
        Some(Self {
            input,
            lookup: Arc::new(lookup),
            props,
        })
    }
}

impl Lookup {
    /// One input batch joined with its catalog rows.
    fn join(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keys = self
            .input_key
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        let mut rows = self.catalog.rows_of(&keys)?;
        let mut batch = batch.clone();
        if !self.keep_unmatched {
            let matched = is_not_null(&rows)?;
            batch = filter_record_batch(&batch, &matched)?;
            rows = filter(&rows, &matched)?.as_primitive().clone();
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for &c in &self.columns {
            columns.push(take(self.catalog.rows.column(c), &rows, None)?);
        }
        if let Some(projection) = &self.projection {
            columns = projection
                .iter()
                .map(|&i| Arc::clone(&columns[i]))
                .collect();
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl DisplayAs for CatalogLookupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.lookup.keep_unmatched {
            "Left"
        } else {
            "Inner"
        };
        write!(
            f,
            "CatalogLookupExec: join_type={kind}, key={}",
            self.lookup.input_key
        )
    }
}

impl ExecutionPlan for CatalogLookupExec {
    fn name(&self) -> &'static str {
        "CatalogLookupExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.lookup.input_key)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(children, "CatalogLookupExec")?;
        Ok(Arc::new(Self {
            input,
            lookup: Arc::clone(&self.lookup),
            props: Arc::clone(&self.props),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let lookup = Arc::clone(&self.lookup);
        let batches = input.map(move |batch| lookup.join(&batch?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn repeated_keys_are_not_indexed() {
        let schema = Arc::new(Schema::new(vec![Field::new("uri", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(vec!["a", "a"]))],
        )
        .unwrap();
        assert!(KeyedCatalog::build(&schema, &[batch], "uri").is_none());
    }
}
