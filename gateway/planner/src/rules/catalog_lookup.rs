//! Joins with the catalog by lookup, in the physical plan: a hash join of any input with a
//! keyed catalog scan, on the catalog's key, becomes a [`CatalogLookupExec`] (see
//! [`crate::keyed_catalog`]).

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::HashJoinExec;

use crate::keyed_catalog::CatalogLookupExec;

/// Replaces a hash join of any input with a keyed catalog scan, on the catalog's key, by a
/// [`CatalogLookupExec`]. Only where the result is the same: an inner or left join (the
/// catalog on the right, the side the join probes and emits in its order), no other join
/// condition, nulls never equal, no fetch, no promised order, and one output partition.
#[derive(Debug, Default)]
pub(crate) struct CatalogLookupRule;

impl PhysicalOptimizerRule for CatalogLookupRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            match CatalogLookupExec::try_from_join(join) {
                Some(lookup) => Ok(Transformed::yes(Arc::new(lookup) as _)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "sluice_catalog_lookup"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::catalog::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use datafusion::arrow::array::{ArrayRef, RecordBatch};

    use super::*;
    use crate::catalog_table::CatalogTable;
    use crate::rules::testing::{listener, physical};
    use crate::tests::rollups;

    fn table(columns: Vec<(&str, ArrayRef)>) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    /// Plays (some of unknown or null tracks) and a catalog keyed by `uri`, joined by
    /// lookup or not.
    fn context(lookup: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(1))
            .with_default_features();
        if lookup {
            state = state.with_physical_optimizer_rule(Arc::new(CatalogLookupRule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let plays = table(vec![
            (
                "uri",
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    Some("a"),
                    Some("zz"),
                    None,
                    Some("b"),
                ])),
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]))),
        ]);
        // More tracks than plays, as in the catalog: the join builds on the plays.
        let tracks = table(vec![
            (
                "name",
                Arc::new(StringArray::from(vec!["A", "B", "C", "D", "E", "F", "G"])),
            ),
            (
                "uri",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e", "f", "g"])),
            ),
        ]);
        ctx.register_table("plays", plays).unwrap();
        let keyed = CatalogTable::new(tracks, None, Some("uri".into()));
        ctx.register_table("tracks", Arc::new(keyed)).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let batches = df.collect().await.unwrap();
        (pretty_format_batches(&batches).unwrap().to_string(), shown)
    }

    #[tokio::test]
    async fn a_join_on_the_catalog_key_is_a_lookup_with_the_same_rows() {
        for sql in [
            "SELECT p.n, t.name FROM plays p JOIN tracks t ON p.uri = t.uri ORDER BY p.n",
            "SELECT p.n, t.name, t.uri FROM plays p LEFT JOIN tracks t ON p.uri = t.uri \
             ORDER BY p.n",
            "SELECT t.name, sum(p.n) AS s FROM plays p JOIN tracks t ON p.uri = t.uri \
             GROUP BY t.name ORDER BY t.name",
        ] {
            let (hashed, _) = run(&context(false), sql).await;
            let (looked_up, plan) = run(&context(true), sql).await;
            assert!(plan.contains("CatalogLookupExec"), "{sql}\n{plan}");
            assert!(!plan.contains("HashJoinExec"), "{sql}\n{plan}");
            assert_eq!(hashed, looked_up, "{sql}");
        }
        // Not on the key, or the catalog is the side kept: a hash join as before.
        for sql in [
            "SELECT p.n FROM plays p JOIN tracks t ON p.uri = t.name",
            "SELECT t.name, p.n FROM tracks t LEFT JOIN plays p ON p.uri = t.uri",
        ] {
            let (hashed, _) = run(&context(false), sql).await;
            let (kept, plan) = run(&context(true), sql).await;
            assert!(!plan.contains("CatalogLookupExec"), "{sql}\n{plan}");
            assert_eq!(hashed, kept, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_listeners_join_with_tracks_on_its_key_is_a_lookup() {
        let plan = physical(
            &rollups::engine(),
            &listener("a"),
            "SELECT s.ts, t.track_name FROM streams s JOIN tracks t ON s.track_uri = t.track_uri",
            "sluice_catalog_lookup",
        )
        .await;
        assert!(plan.before.contains("HashJoinExec"), "{plan}");
        assert!(!plan.after.contains("HashJoinExec"), "{plan}");
        assert_eq!(
            plan.added("CatalogLookupExec: join_type=Inner"),
            1,
            "{plan}"
        );
    }
}
