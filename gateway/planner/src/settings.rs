//! Per-session settings: `SET name = value` and Flight SQL's SetSessionOptions. Sluice's own
//! are `sluice.route` ([`RouteMode`]) and `sluice.freshness` ([`Freshness`]); the rest are
//! DataFusion options.

use std::collections::BTreeMap;

use datafusion::common::extensions_options;
use datafusion::config::{ConfigExtension, ConfigField, ConfigOptions, ExtensionOptions, Visit};
use datafusion::error::DataFusionError;

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

/// A closed set of words as a DataFusion option: parsed case-insensitively, refused with the
/// words it may take.
trait OptionWords: Sized + Copy + 'static {
    const WORDS: &'static [(&'static str, Self)];

    fn as_str(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::WORDS
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(w, _)| w)
    }

    fn parse(value: &str) -> datafusion::error::Result<Self> {
        let value = value.trim().to_ascii_lowercase();
        Self::WORDS
            .iter()
            .find(|(w, _)| *w == value)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let words: Vec<&str> = Self::WORDS.iter().map(|(w, _)| *w).collect();
                DataFusionError::Configuration(format!(
                    "'{value}' is not one of {}",
                    words.join(", ")
                ))
            })
    }
}

impl OptionWords for RouteMode {
    const WORDS: &'static [(&'static str, Self)] = &[("auto", Self::Auto), ("raw", Self::Raw)];
}

impl OptionWords for Freshness {
    const WORDS: &'static [(&'static str, Self)] = &[("live", Self::Live), ("cold", Self::Cold)];
}

impl RouteMode {
    pub(crate) fn as_str(self) -> &'static str {
        OptionWords::as_str(self)
    }
}

impl Freshness {
    pub(crate) fn as_str(self) -> &'static str {
        OptionWords::as_str(self)
    }
}

macro_rules! word_option {
    ($t:ty) => {
        impl ConfigField for $t {
            fn visit<V: Visit>(&self, v: &mut V, key: &str, description: &'static str) {
                v.some(key, self.as_str(), description)
            }

            fn set(&mut self, _key: &str, value: &str) -> datafusion::error::Result<()> {
                *self = <$t as OptionWords>::parse(value)?;
                Ok(())
            }
        }
    };
}
word_option!(RouteMode);
word_option!(Freshness);

extensions_options! {
    /// Sluice's own session options, `sluice.*`.
    pub(crate) struct SluiceOptions {
        /// How a query may be answered: `auto` (rollups, partials per source) or `raw`.
        pub(crate) route: RouteMode, default = RouteMode::Auto
        /// Which events a query sees: `live` (all) or `cold` (before W only).
        pub(crate) freshness: Freshness, default = Freshness::Live
    }
}

impl ConfigExtension for SluiceOptions {
    const PREFIX: &'static str = "sluice";
}

impl SluiceOptions {
    /// The option names, with their prefix.
    fn names() -> Vec<String> {
        Self::default()
            .entries()
            .into_iter()
            .map(|e| format!("{}.{}", Self::PREFIX, e.key))
            .collect()
    }
}

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
        let bad_value = |p: String| Error::Setting {
            name: name.clone(),
            problem: p,
        };
        let bad_name = |p: String| Error::UnknownSetting {
            name: name.clone(),
            problem: p,
        };
        if let Some(key) = name.strip_prefix("sluice.") {
            let names = SluiceOptions::names();
            if !names.contains(&name) {
                return Err(bad_name(format!(
                    "is not a Sluice setting (there are {})",
                    names.join(" and ")
                )));
            }
            let mut probe = SluiceOptions::default();
            ExtensionOptions::set(&mut probe, key, value)
                .map_err(|e| bad_value(e.strip_backtrace()))?;
            self.values.insert(name, value.trim().to_ascii_lowercase());
            return Ok(());
        }
        if FORBIDDEN.contains(&name.as_str())
            || !SETTABLE_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            return Err(bad_name(format!(
                "cannot be changed per session (settable: {})",
                SETTABLE_PREFIXES
                    .iter()
                    .map(|p| format!("{p}*"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut probe = ConfigOptions::new();
        if !probe.entries().iter().any(|e| e.key == name) {
            return Err(bad_name("is not a DataFusion option".into()));
        }
        probe
            .set(&name, value)
            .map_err(|e| bad_value(e.strip_backtrace()))?;
        self.values.insert(name, value.to_string());
        Ok(())
    }

    /// The session's `sluice.*` options.
    pub(crate) fn sluice(&self) -> SluiceOptions {
        let mut options = SluiceOptions::default();
        for (name, value) in &self.values {
            if let Some(key) = name.strip_prefix("sluice.") {
                // Checked by `set`.
                let _ = ExtensionOptions::set(&mut options, key, value);
            }
        }
        options
    }

    /// The session's `sluice.route`.
    pub(crate) fn route(&self) -> RouteMode {
        self.sluice().route
    }

    /// The session's `sluice.freshness`.
    pub(crate) fn freshness(&self) -> Freshness {
        self.sluice().freshness
    }

    /// Applies the settings to a query's options: DataFusion's by name, Sluice's as the
    /// [`SluiceOptions`] extension.
    pub(crate) fn apply(&self, options: &mut ConfigOptions) -> Result<()> {
        options.extensions.insert(self.sluice());
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

    /// Settings recorded by [`Self::set`] (on this replica or another), checked again.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut settings = Self::default();
        for (name, value) in pairs {
            settings.set(name, value)?;
        }
        Ok(settings)
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
        assert!(matches!(
            s.set("datafusion.execution.batch_size", "lots"),
            Err(Error::Setting { .. })
        ));
        assert!(matches!(
            s.set("datafusion.execution.no_such_thing", "1"),
            Err(Error::UnknownSetting { .. })
        ));
        assert!(matches!(
            s.set("datafusion.catalog.information_schema", "true"),
            Err(Error::UnknownSetting { .. })
        ));
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
        assert!(matches!(
            s.set("sluice.route", "fast"),
            Err(Error::Setting { problem, .. }) if problem.contains("'fast' is not one of auto, raw")
        ));
        assert!(matches!(
            s.set("sluice.watermark", "0"),
            Err(Error::UnknownSetting { .. })
        ));
        let mut options = ConfigOptions::new();
        s.apply(&mut options).unwrap();
        let applied = options.extensions.get::<SluiceOptions>().unwrap();
        assert_eq!(
            (applied.route, applied.freshness),
            (RouteMode::Raw, Freshness::Cold)
        );
    }
}
