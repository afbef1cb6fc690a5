use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads its own listening history only (bound to one `user_id`).
    Listener,
    /// Reads across listeners.
    Analyst,
    /// Reads across listeners and may ingest.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Listener => "listener",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[principal]]` entry of the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// Login name for HTTP Basic.
    pub name: String,
    /// Password for HTTP Basic, in plain text (accepted, with a warning at start).
    #[serde(default)]
    pub password: Option<String>,
    /// Password for HTTP Basic as an Argon2id hash, from `sluice hash-password`.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Static bearer token, sent as `authorization: Bearer <token>` with no handshake.
    #[serde(default)]
    pub token: Option<String>,
    pub role: Role,
    /// The listener this principal is bound to (listeners only).
    #[serde(default)]
    pub user_id: Option<String>,
    /// This principal's limits, over the configuration's `[limits]`.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `[limits]`, or a principal's `limits`: any field left out keeps the default. For the
/// timeout, memory and rows, 0 means no limit.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_concurrent_queries: Option<u32>,
    pub query_timeout_secs: Option<u64>,
    pub query_memory_mb: Option<u64>,
    pub max_rows: Option<u64>,
}

impl LimitsConfig {
    /// These settings over `base`.
    pub fn over(&self, base: Limits) -> Result<Limits, String> {
        let nonzero = |v: u64| (v > 0).then_some(v);
        let limits = Limits {
            max_concurrent_queries: self
                .max_concurrent_queries
                .unwrap_or(base.max_concurrent_queries),
            query_timeout: match self.query_timeout_secs {
                Some(s) => nonzero(s).map(Duration::from_secs),
                None => base.query_timeout,
            },
            query_memory_bytes: match self.query_memory_mb {
                Some(mb) => nonzero(mb).map(|mb| mb.saturating_mul(1024 * 1024)),
                None => base.query_memory_bytes,
            },
            max_rows: match self.max_rows {
                Some(r) => nonzero(r),
                None => base.max_rows,
            },
        };
        if limits.max_concurrent_queries == 0 {
            return Err("max_concurrent_queries must be at least 1".into());
        }
        Ok(limits)
    }
}

/// What one principal's queries may take. `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Queries running at once (from DoGet to the end of the result).
    pub max_concurrent_queries: u32,
    /// Wall time of one query, planning to last row.
    pub query_timeout: Option<Duration>,
    /// Memory one query's operators may hold (sorts, aggregates, joins).
    pub query_memory_bytes: Option<u64>,
    /// Rows one result may have.
    pub max_rows: Option<u64>,
}

impl Default for Limits {
    /// Generous enough for any per-listener question and an analyst's export; small enough
    /// that one runaway query cannot hold the gateway.
    fn default() -> Self {
        Self {
            max_concurrent_queries: 16,
            query_timeout: Some(Duration::from_secs(300)),
            query_memory_bytes: Some(2048 * 1024 * 1024),
            max_rows: None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    name: Arc<str>,
    role: Role,
    user_id: Option<Arc<str>>,
    limits: Limits,
}

impl Principal {
    pub fn new(name: &str, role: Role, user_id: Option<&str>) -> Self {
        Self {
            name: name.into(),
            role,
            user_id: user_id.map(Into::into),
            limits: Limits::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The only `user_id` this principal may read, or `None` if it reads across listeners.
    pub fn scope(&self) -> Option<&str> {
        match self.role {
            Role::Listener => self.user_id.as_deref(),
            Role::Analyst | Role::Admin => None,
        }
    }

    /// Who this is, as sealed into what the principal carries between calls.
    pub fn identity(&self) -> Identity {
        Identity {
            name: self.name.to_string(),
            role: self.role,
            user_id: self.user_id.as_deref().map(str::to_string),
        }
    }
}

/// A principal's name, role and listener: what a token, handle or ticket says it belongs to.
/// Limits are not in it: they come from the configuration of the replica serving the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl Identity {
    /// Whether `principal` is the one this identity names.
    pub fn is(&self, principal: &Principal) -> bool {
        *principal.name == *self.name
            && principal.role == self.role
            && principal.user_id.as_deref() == self.user_id.as_deref()
    }
}
