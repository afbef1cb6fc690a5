//! Per-session settings: `SET name = value` and Flight SQL's SetSessionOptions. Sluice's own
//! are `sluice.route` ([`RouteMode`]) and `sluice.freshness` ([`Freshness`]); the rest are
//! DataFusion options.

use std::collections::BTreeMap;

use datafusion::config::ConfigOptions;

use crate::error::{Error, Result};

/// DataFusion options a session may change; everything else (catalog, runtime) is the
/// operator's.
const SETTABLE_PREFIXES: &[&str] = &[
    "datafusion.execution.",
    "datafusion.optimizer.",
    "datafusion.explain.",
    "datafusion.sql_parser.",
    "datafusion.format.",
];

/// Settings that would let a session read outside what the gateway serves, or switch off the
/// optimizer rules that split `streams` into what its sources hold (no answer without them).
const FORBIDDEN: &[&str] = &[
    "datafusion.execution.listing_table_ignore_subdirectory",
    "datafusion.optimizer.max_passes",
    "datafusion.optimizer.skip_failed_rules",
    // Column statistics (min/max of user_id) span every listener.
    "datafusion.explain.show_statistics",
];

/// `sluice.route`: how a query may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RouteMode {
    /// The cheapest route: rollups, partial aggregates per source (the default).
    #[default]
    Auto,
    /// Raw events only, aggregated in one place: the reference the routes are checked against.
    Raw,
}

/// `sluice.freshness`: which events a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Freshness {
    /// Every event, up to the last one ingested (the default).
    #[default]
    Live,
    /// Only the cold store's events (before `W`); the hot store is not read.
    Cold,
}

impl RouteMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RouteMode::Auto => "auto",
            RouteMode::Raw => "raw",
        }
    }
}

impl Freshness {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Freshness::Live => "live",
            Freshness::Cold => "cold",
        }
    }
}

const ROUTE: &str = "sluice.route";
const FRESHNESS: &str = "sluice.freshness";

/// The settings one session has changed, applied to every query it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SessionSettings {
    values: BTreeMap<String, String>,
}

impl SessionSettings {
    /// Checks and records `name = value`. Names are case-insensitive.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        let name = if name.contains('.') {
            name
        } else {
            // `SET batch_size = 10` means the DataFusion option of that name, as in DataFusion.
            format!("datafusion.execution.{name}")
        };
        let problem = |p: String| Error::Setting {
            name: name.clone(),
            problem: p,
        };
        if name.starts_with("sluice.") {
            let value = value.trim().to_ascii_lowercase();
            let allowed: &[&str] = match name.as_str() {
                ROUTE => &["auto", "raw"],
                FRESHNESS => &["live", "cold"],
                _ => {
                    return Err(problem(format!(
                        "is not a Sluice setting (there are {ROUTE} and {FRESHNESS})"
                    )));
                }
            };
            if !allowed.contains(&value.as_str()) {
                return Err(problem(format!(
                    "'{value}' is not one of {}",
                    allowed.join(", ")
                )));
            }
            self.values.insert(name, value);
            return Ok(());
        }
        if FORBIDDEN.contains(&name.as_str())
            || !SETTABLE_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            return Err(problem(format!(
                "cannot be changed per session (settable: {})",
                SETTABLE_PREFIXES
                    .iter()
                    .map(|p| format!("{p}*"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut probe = ConfigOptions::new();
        probe
            .set(&name, value)
            .map_err(|e| problem(e.strip_backtrace()))?;
        self.values.insert(name, value.to_string());
        Ok(())
    }

    /// The session's `sluice.route`.
    pub(crate) fn route(&self) -> RouteMode {
        match self.values.get(ROUTE).map(String::as_str) {
            Some("raw") => RouteMode::Raw,
            _ => RouteMode::Auto,
        }
    }

    /// The session's `sluice.freshness`.
    pub(crate) fn freshness(&self) -> Freshness {
        match self.values.get(FRESHNESS).map(String::as_str) {
            Some("cold") => Freshness::Cold,
            _ => Freshness::Live,
        }
    }

    /// Applies the DataFusion settings to a query's options.
    pub(crate) fn apply(&self, options: &mut ConfigOptions) -> Result<()> {
        for (k, v) in self
            .values
            .iter()
            .filter(|(k, _)| !k.starts_with("sluice."))
        {
            options.set(k, v).map_err(|e| Error::Setting {
                name: k.clone(),
                problem: e.strip_backtrace(),
            })?;
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_execution_options_and_refuses_catalog_ones() {
        let mut s = SessionSettings::default();
        s.set("datafusion.execution.batch_size", "1024").unwrap();
        s.set("BATCH_SIZE", "2048").unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![("datafusion.execution.batch_size", "2048")]
        );
        assert!(
            s.set("datafusion.catalog.information_schema", "true")
                .is_err()
        );
        assert!(s.set("datafusion.execution.batch_size", "lots").is_err());
        assert!(s.set("datafusion.execution.no_such_thing", "1").is_err());
    }

    #[test]
    fn sluice_settings_take_their_values_only() {
        let mut s = SessionSettings::default();
        assert_eq!(
            (s.route(), s.freshness()),
            (RouteMode::Auto, Freshness::Live)
        );
        s.set("SLUICE.ROUTE", "Raw").unwrap();
        s.set("sluice.freshness", "cold").unwrap();
        assert_eq!(
            (s.route(), s.freshness()),
            (RouteMode::Raw, Freshness::Cold)
        );
        assert!(s.set("sluice.route", "fast").is_err());
        assert!(s.set("sluice.watermark", "0").is_err());
        let mut options = ConfigOptions::new();
        s.apply(&mut options).unwrap();
    }
}
