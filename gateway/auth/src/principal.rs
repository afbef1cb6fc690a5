use std::sync::Arc;

use serde::Deserialize;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads its own listening history only (bound to one `user_id`).
    Listener,
    /// Reads across listeners.
    Analyst,
    /// Reads across listeners and may ingest.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Listener => "listener",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        })
    }
}

/// One `[[principal]]` entry of the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// Login name for HTTP Basic.
    pub name: String,
    /// Password for HTTP Basic.
    #[serde(default)]
    pub password: Option<String>,
    /// Static bearer token, sent as `authorization: Bearer <token>` with no handshake.
    #[serde(default)]
    pub token: Option<String>,
    pub role: Role,
    /// The listener this principal is bound to (listeners only).
    #[serde(default)]
    pub user_id: Option<String>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    name: Arc<str>,
    role: Role,
    user_id: Option<Arc<str>>,
}

impl Principal {
    pub fn new(name: &str, role: Role, user_id: Option<&str>) -> Self {
        Self {
            name: name.into(),
            role,
            user_id: user_id.map(Into::into),
        }
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
}
