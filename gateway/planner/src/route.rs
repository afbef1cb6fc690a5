//! What one query's route is made of, shared by the rules that choose it and by what reports
//! it: the query's watermark `W` and route settings ([`QueryScope`], carried to the rules in
//! the query's config options by [`QueryScopeOption`]), and what the rules planned: each read
//! of a branch of `streams` ([`Route`]) and each choice of a rollup ([`RollupChoice`]).
//! [`crate::manifest`] and [`crate::plan_cache`] read them; no rule depends on another's
//! module for them.

use std::sync::{Arc, Mutex};

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{Result, plan_err};
use datafusion::optimizer::OptimizerConfig;
use sluice_connector_api::TimeRange;

use crate::settings::{Freshness, RouteMode};

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

/// Why the rollups were or were not used, for EXPLAIN and the result manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RollupChoice {
    /// The rollup read, with the range of `ts` it answered.
    pub(crate) used: Option<(String, TimeRange)>,
    /// Each rollup not read, with the reason.
    pub(crate) passed_over: Vec<(String, String)>,
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
