//! How a result was computed, for the client (a JSON document with the result), for
//! `EXPLAIN` (as text) and for the log: the `W` used, the route settings, and every read of
//! `streams` (source, raw events or which rollup, time range, listeners) with the rollup
//! choices and their reasons.

use serde::Serialize;
use sluice_connector_api::TimeRange;

use crate::route::{RollupChoice, Route};
use crate::settings::{Freshness, RouteMode};

/// The manifest of one query.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// `W` in ms since the epoch, and as an RFC 3339 time.
    pub watermark_ms: i64,
    pub watermark: String,
    /// `sluice.route` and `sluice.freshness` as the query ran.
    pub route: &'static str,
    pub freshness: &'static str,
    /// The sources read, each once (`parquet`, `memory`, `clickhouse`, `redis`), in order.
    pub sources: Vec<String>,
    /// The rollups read.
    pub rollups: Vec<String>,
    /// Every read of `streams` or of a rollup standing in for it.
    pub reads: Vec<ManifestRead>,
    /// Rollups considered and not read, with why.
    pub rollups_passed_over: Vec<PassedOver>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestRead {
    /// `hot` (events at or after `W`) or `cold` (before `W`).
    pub branch: &'static str,
    pub source: String,
    /// `streams` (raw events) or the rollup's name.
    pub table: String,
    /// The time range read, `[from, to)`, RFC 3339; `None` where unbounded.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The listeners read; `None` for all of them.
    pub users: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PassedOver {
    pub rollup: String,
    pub reason: String,
}

/// A time as RFC 3339 in UTC (millisecond precision where it has any).
pub(crate) fn rfc3339(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) if ms % 1000 == 0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

impl Manifest {
    pub(crate) fn new(
        watermark_ms: i64,
        route: RouteMode,
        freshness: Freshness,
        routes: &[Route],
        choices: &[RollupChoice],
    ) -> Self {
        let mut sources: Vec<String> = Vec::new();
        let mut rollups: Vec<String> = Vec::new();
        for r in routes {
            if !sources.contains(&r.source) {
                sources.push(r.source.clone());
            }
            if let Some(name) = &r.rollup
                && !rollups.contains(name)
            {
                rollups.push(name.clone());
            }
        }
        let mut passed: Vec<PassedOver> = Vec::new();
        for c in choices {
            for (rollup, reason) in &c.passed_over {
                if !passed
                    .iter()
                    .any(|p| &p.rollup == rollup && &p.reason == reason)
                {
                    passed.push(PassedOver {
                        rollup: rollup.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        Self {
            watermark_ms,
            watermark: rfc3339(watermark_ms),
            route: route.as_str(),
            freshness: freshness.as_str(),
            sources,
            rollups,
            reads: routes.iter().map(ManifestRead::from).collect(),
            rollups_passed_over: passed,
        }
    }

    /// The manifest as one JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a manifest serializes")
    }

    /// One line per read, for people: what `EXPLAIN` shows and the log records.
    pub fn describe(&self) -> String {
        let mut lines = vec![format!(
            "W = {} (route {}, freshness {})",
            self.watermark, self.route, self.freshness
        )];
        if self.reads.is_empty() {
            lines.push("no read of streams (only tables the query names)".to_string());
        }
        for r in &self.reads {
            let range = match (&r.from, &r.to) {
                (None, None) => "all time".to_string(),
                (Some(f), None) => format!("from {f}"),
                (None, Some(t)) => format!("before {t}"),
                (Some(f), Some(t)) => format!("{f} .. {t}"),
            };
            let users = match &r.users {
                Some(u) if u.len() <= 3 => format!("listener {}", u.join(", ")),
                Some(u) => format!("{} listeners", u.len()),
                None => "all listeners".to_string(),
            };
            let what = if r.table == "streams" {
                "raw events".to_string()
            } else {
                format!("rollup {}", r.table)
            };
            lines.push(format!(
                "{} {}: {what}, {range}, {users}",
                r.branch, r.source
            ));
        }
        for p in &self.rollups_passed_over {
            lines.push(format!("not {}: {}", p.rollup, p.reason));
        }
        lines.join("\n")
    }

    /// The kinds of read, for a metric label of few values: `hot`, `cold` (raw events on
    /// either side of `W`) and `rollup`, joined by `+`; `none` without a read of `streams`.
    pub fn route_label(&self) -> &'static str {
        let raw = |branch: &str| {
            self.reads
                .iter()
                .any(|r| r.branch == branch && r.table == "streams")
        };
        let rollup = self.reads.iter().any(|r| r.table != "streams");
        match (raw("hot"), raw("cold"), rollup) {
            (false, false, false) => "none",
            (true, false, false) => "hot",
            (false, true, false) => "cold",
            (false, false, true) => "rollup",
            (true, true, false) => "hot+cold",
            (true, false, true) => "hot+rollup",
            (false, true, true) => "cold+rollup",
            (true, true, true) => "hot+cold+rollup",
        }
    }

    /// The reads on one line, for the log.
    pub fn summary(&self) -> String {
        self.describe().replace('\n', "; ")
    }
}

impl From<&Route> for ManifestRead {
    fn from(r: &Route) -> Self {
        let TimeRange { start_ms, end_ms } = r.time;
        Self {
            branch: r.branch.label(),
            source: r.source.clone(),
            table: r.rollup.clone().unwrap_or_else(|| "streams".to_string()),
            from: start_ms.map(rfc3339),
            to: end_ms.map(rfc3339),
            users: r.users.clone(),
        }
    }
}
