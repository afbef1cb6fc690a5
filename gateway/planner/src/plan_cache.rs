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

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use sluice_metrics::PLAN_CACHE;

use crate::rollups::RollupChoice;
use crate::settings::SessionSettings;
use crate::streams::Route;

/// How many plans the engine keeps unless told otherwise.
pub const DEFAULT_PLAN_CACHE_ENTRIES: usize = 256;

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

#[cfg(test)]
mod tests {
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
