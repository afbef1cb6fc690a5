//! Routed plans kept for statements that come again. An agent asks the same question many
//! times, and every ADBC query prepares its statement again (CLIENTS.md): parsing, analysis,
//! Sluice's rules and DataFusion's optimizer cost a few milliseconds each time, as much as
//! the read itself for a small per-listener question.
//!
//! A plan is reused only where planning again would give the same plan: the same SQL text,
//! session settings and principal (its listener scope is in the plan), and the same `W` (the
//! split of `streams` and the rollups' ranges are fixed by it, so a new `W` is a new key).
//! Statements with parameters, or calling a function that is not immutable (`now()`,
//! `current_date`, `random()`: the optimizer folds the time ones at planning), are never
//! kept. Plans hold no per-query state: data is read when a plan runs, never when it is
//! planned, so a kept plan still sees every event ingested since.
//!
//! The physical plan (the operators) is kept with it where running it again is exact
//! ([`physical_not_reusable`]): physical planning was a quarter of the gateway's CPU for a small
//! per-listener question (perf, with the client idling between questions). Each run gets its
//! own copy with the operators' state renewed (DataFusion's `reset_plan_states`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use sluice_metrics::PLAN_CACHE;

use crate::route::{RollupChoice, Route};
use crate::settings::SessionSettings;

/// How many plans the engine keeps unless told otherwise. An entry (routed, federated and
/// physical plan of a listener's question) took about 60 KiB of resident memory (170 kept:
/// 129 MiB against 118 MiB with none), so this is about 64 MiB at most. 256 was fewer than
/// the benchmark's 322 statements in rotation: least recently used out first, none was
/// still kept when it came again.
pub const DEFAULT_PLAN_CACHE_ENTRIES: usize = 1024;

/// What makes two statements plan the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlanKey {
    pub(crate) sql: String,
    pub(crate) settings: SessionSettings,
    pub(crate) principal: String,
    /// The listener the plan is scoped to.
    pub(crate) scope: Option<String>,
    pub(crate) watermark_ms: i64,
}

/// A routed plan and what its routing recorded (for the manifest and EXPLAIN).
#[derive(Debug, Clone)]
pub(crate) struct RoutedPlan {
    pub(crate) plan: LogicalPlan,
    /// `plan` federated (remote parts as SQL), if it runs outside EXPLAIN.
    pub(crate) federated: Option<LogicalPlan>,
    pub(crate) routes: Vec<Route>,
    pub(crate) rollups: Vec<RollupChoice>,
    /// `federated` planned into operators, never run, if running it again is exact.
    pub(crate) physical: Option<Arc<dyn ExecutionPlan>>,
}

#[derive(Debug)]
struct Entry {
    plan: RoutedPlan,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<PlanKey, Entry>,
    clock: u64,
}

/// At most `capacity` routed plans; the least recently used one goes first.
#[derive(Debug)]
pub(crate) struct PlanCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl PlanCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Entries::default()),
        }
    }

    pub(crate) fn get(&self, key: &PlanKey) -> Option<RoutedPlan> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.entries.lock().expect("plan cache lock");
        entries.clock += 1;
        let now = entries.clock;
        let found = entries.map.get_mut(key).map(|e| {
            e.last_used = now;
            e.plan.clone()
        });
        PLAN_CACHE
            .with_label_values(&[if found.is_some() { "hit" } else { "miss" }])
            .inc();
        found
    }

    pub(crate) fn insert(&self, key: PlanKey, plan: RoutedPlan) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("plan cache lock");
        entries.clock += 1;
        let last_used = entries.clock;
        if entries.map.len() >= self.capacity && !entries.map.contains_key(&key) {
            // A linear scan, only when full: a few hundred entries, under a microsecond
            // next to the milliseconds a plan saves.
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.map.remove(&oldest);
            }
        }
        entries.map.insert(key, Entry { plan, last_used });
    }

    /// Keeps `physical` with the routed plan of `key`, if that is still kept.
    pub(crate) fn keep_physical(&self, key: &PlanKey, physical: Arc<dyn ExecutionPlan>) {
        let mut entries = self.entries.lock().expect("plan cache lock");
        if let Some(entry) = entries.map.get_mut(key) {
            entry.plan.physical.get_or_insert(physical);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().expect("plan cache lock").map.len()
    }
}

/// True if planning `plan` again would give the same routed plan: no parameters and no
/// function whose value depends on when or how often it is called.
pub(crate) fn reusable(plan: &LogicalPlan) -> bool {
    let mut reusable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let fixed = match e {
                    Expr::Placeholder(_) => false,
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    _ => true,
                };
                if fixed {
                    Ok(TreeNodeRecursion::Continue)
                } else {
                    reusable = false;
                    Ok(TreeNodeRecursion::Stop)
                }
            })
        })
    });
    reusable
}

/// Operators that hold no state between runs but what `reset_plan_states` renews, and
/// whose inputs are read when they run.
const REUSABLE_OPERATORS: &[&str] = &[
    "AggregateExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "CooperativeExec",
    "FilterExec",
    "GlobalLimitExec",
    "HashJoinExec",
    "LocalLimitExec",
    "ProjectionExec",
    "RepartitionExec",
    "SortExec",
    "SortExec(TopK)",
    "SortPreservingMergeExec",
    "UnionExec",
    // Sluice's own and datafusion-federation's: stateless.
    "CatalogLookupExec",
    "KeyedScanExec",
    "ListenerRowsExec",
    "SchemaCastScanExec",
    "SourceReadExec",
];

/// Scans that read their source when they run, not when they are planned.
const SCANS_READ_AT_RUN: &[&str] = &[
    "ClickHouseStatementExec",
    "EmptyExec",
    "PlaceholderRowExec",
    "RedisScanExec",
];

/// Why `plan` may not run again, or `None` if it gives the same answer as planning again
/// when run again (after `reset_plan_states`). Not where a scan or filter holds a dynamic
/// filter made by an operator above it (`reset_plan_states` renews the producer's, not the
/// copy below; a top-k sort's own filter, used by it alone, is renewed), nor where a scan
/// took its rows when it was planned (the embedded hot store's), except the catalog's under
/// [`crate::keyed_catalog::KeyedScanExec`] (the catalog does not change while Sluice
/// runs). Unknown operators are not reused.
pub(crate) fn physical_not_reusable(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let mut produced = HashSet::new();
    if let Some(why) = dynamic_filters_produced(plan, &mut produced) {
        return Some(why);
    }
    check_operators(plan, false, &produced)
}

/// The ids of the dynamic filters operators of `plan` make, into `ids`.
fn dynamic_filters_produced(
    node: &Arc<dyn ExecutionPlan>,
    ids: &mut HashSet<u64>,
) -> Option<String> {
    for filter in node.dynamic_expressions_produced() {
        match filter.expression_id() {
            Some(id) => ids.insert(id),
            None => {
                return Some(format!(
                    "{} makes a dynamic filter without an id",
                    node.name()
                ));
            }
        };
    }
    node.children()
        .into_iter()
        .find_map(|c| dynamic_filters_produced(c, ids))
}

fn check_operators(
    node: &Arc<dyn ExecutionPlan>,
    under_catalog: bool,
    produced: &HashSet<u64>,
) -> Option<String> {
    let name = node.name();
    let own: HashSet<u64> = node
        .dynamic_expressions_produced()
        .iter()
        .filter_map(|f| f.expression_id())
        .collect();
    let mut held = false;
    let _ = node.apply_expressions(&mut |root| {
        root.apply(|e| {
            held = e
                .expression_id()
                .is_some_and(|id| produced.contains(&id) && !own.contains(&id));
            Ok(if held {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    });
    if held {
        return Some(format!("{name} holds a dynamic filter from above"));
    }
    let children = node.children();
    let known = if children.is_empty() {
        SCANS_READ_AT_RUN.contains(&name) || (under_catalog && name == "DataSourceExec")
    } else {
        REUSABLE_OPERATORS.contains(&name)
    };
    if !known {
        return Some(format!("{name} is not known to run again exactly"));
    }
    let catalog_below = name == "KeyedScanExec" || (under_catalog && name == "CooperativeExec");
    children
        .into_iter()
        .find_map(|c| check_operators(c, catalog_below, produced))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_expr::expressions::Column as PhysicalColumn;
    use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
    use datafusion::physical_plan::sorts::sort::SortExec;
    use datafusion::physical_plan::union::UnionExec;
    use datafusion::physical_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn logical(sql: &str) -> LogicalPlan {
        SessionContext::new()
            .state()
            .create_logical_plan(sql)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn only_plans_fixed_by_their_text_are_reusable() {
        for sql in [
            "SELECT 1 + 1",
            "SELECT date_trunc('month', TIMESTAMP '2019-05-04T00:00:00Z')",
            "SELECT x FROM (SELECT 1 AS x) WHERE x IN (SELECT 1)",
        ] {
            assert!(reusable(&logical(sql).await), "{sql}");
        }
        for sql in [
            "SELECT now()",
            "SELECT current_date",
            "SELECT random()",
            "SELECT $1",
            "SELECT x FROM (SELECT 1 AS x) WHERE x IN (SELECT 1 WHERE now() IS NOT NULL)",
        ] {
            assert!(!reusable(&logical(sql).await), "{sql}");
        }
    }

    /// Operators a listener's questions use: a top-k sort (its dynamic filter its own)
    /// over a union of a scan read when it runs and a projection.
    fn top_k(input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let x = Arc::new(PhysicalColumn::new("x", 0)) as Arc<dyn PhysicalExpr>;
        let order = LexOrdering::new([PhysicalSortExpr::new_default(x)]).unwrap();
        Arc::new(SortExec::new(order, input).with_fetch(Some(1)))
    }

    fn one_row() -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        Arc::new(PlaceholderRowExec::new(schema))
    }

    #[test]
    fn physical_plans_are_kept_only_where_running_them_again_is_exact() {
        let sort = top_k(one_row());
        assert!(!sort.dynamic_expressions_produced().is_empty());
        assert_eq!(physical_not_reusable(&sort), None);
        let union = UnionExec::try_new(vec![one_row(), one_row()]).unwrap();
        assert_eq!(physical_not_reusable(&top_k(union)), None);

        // A filter below the sort holding the sort's dynamic filter (as a scan would if
        // the filter were pushed down): a reset renews the sort's, not the filter's.
        let below = top_k(one_row());
        let dynamic = below.dynamic_expressions_produced().remove(0);
        let holder: Arc<dyn ExecutionPlan> =
            Arc::new(FilterExec::try_new(dynamic, one_row()).unwrap());
        let sort = Arc::clone(&below)
            .replace_children(
                vec![holder],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )
            .unwrap();
        assert_eq!(
            physical_not_reusable(&sort).as_deref(),
            Some("FilterExec holds a dynamic filter from above")
        );

        // Rows taken when planned (a memory table, as the embedded hot store's scan).
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let memory =
            MemorySourceConfig::try_new_exec(&[vec![batch.clone()]], batch.schema(), None).unwrap();
        assert_eq!(
            physical_not_reusable(&top_k(memory)).as_deref(),
            Some("DataSourceExec is not known to run again exactly")
        );
    }

    fn key(sql: &str) -> PlanKey {
        PlanKey {
            sql: sql.to_string(),
            settings: SessionSettings::default(),
            principal: "a".into(),
            scope: Some("a".into()),
            watermark_ms: 0,
        }
    }

    #[tokio::test]
    async fn the_least_recently_used_plan_goes_first() {
        let plan = RoutedPlan {
            plan: logical("SELECT 1").await,
            federated: None,
            routes: vec![],
            rollups: vec![],
            physical: None,
        };
        let cache = PlanCache::new(2);
        cache.insert(key("a"), plan.clone());
        cache.insert(key("b"), plan.clone());
        assert!(cache.get(&key("a")).is_some());
        cache.insert(key("c"), plan.clone());
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("b")).is_none());
        assert!(cache.get(&key("a")).is_some());
        assert!(cache.get(&key("c")).is_some());

        let none = PlanCache::new(0);
        none.insert(key("a"), plan);
        assert!(none.get(&key("a")).is_none());
    }
}
