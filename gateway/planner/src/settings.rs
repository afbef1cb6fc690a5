//! Per-session settings: `SET name = value` and Flight SQL's SetSessionOptions.

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

/// Settings that would let a session read outside what the gateway serves.
const FORBIDDEN: &[&str] = &["datafusion.execution.listing_table_ignore_subdirectory"];

/// The settings one session has changed, applied to every query it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

    /// Applies the settings to a query's options.
    pub(crate) fn apply(&self, options: &mut ConfigOptions) -> Result<()> {
        for (k, v) in &self.values {
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
}
