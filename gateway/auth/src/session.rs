//! A session as its token carries it: who logged in, the session's settings, and its
//! expiry, sealed (see `seal.rs`), so that any replica sharing the secret resumes it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::SealError;
use crate::principal::Identity;
use crate::seal::{Purpose, Sealer};

/// What a session token holds, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionClaims {
    /// The session's id: what a replica keeps locally for it is kept under this.
    pub(crate) id: String,
    pub(crate) who: Identity,
    /// Logged in with a JWT: the principal comes from these claims, not the configuration.
    pub(crate) jwt: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) settings: BTreeMap<String, String>,
    /// Counts the changes of `settings`: the newer of a token's and a replica's own wins.
    #[serde(default)]
    pub(crate) version: u64,
}

/// How the caller's session came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// From a session token issued by a handshake (or reissued with new settings).
    Token,
    /// Credentials sent on every call (Basic, a static token, a JWT): the session is
    /// theirs, under an id derived from them, until a token is issued for it.
    Credentials,
}

/// The caller's session: its id, settings and expiry. A replica keeps what it knows of a
/// session under [`Session::id`]; [`crate::Authenticator::reissue`] gives a token carrying
/// changed settings to every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub(crate) claims: SessionClaims,
    pub(crate) kind: SessionKind,
    /// Unix seconds.
    pub(crate) expires_at_s: u64,
}

impl Session {
    /// The session's id, the same on every replica.
    pub fn id(&self) -> &str {
        &self.claims.id
    }

    /// The settings the session's token carries (`SET`, SetSessionOptions), by name.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.claims.settings
    }

    /// How many times the token's settings have changed.
    pub fn version(&self) -> u64 {
        self.claims.version
    }

    /// This session with `settings` at `version`, for [`crate::Authenticator::reissue`].
    pub fn with_settings(mut self, settings: BTreeMap<String, String>, version: u64) -> Self {
        self.claims.settings = settings;
        self.claims.version = version;
        self
    }

    /// Whether the caller sent a session token (rather than its credentials).
    pub fn from_token(&self) -> bool {
        self.kind == SessionKind::Token
    }
}

impl SessionClaims {
    /// The token: the claims sealed until `expires_at_s`, as URL-safe base64.
    pub(crate) fn seal(&self, sealer: &Sealer, expires_at_s: u64) -> String {
        let payload = serde_json::to_vec(self).expect("session claims serialize");
        URL_SAFE_NO_PAD.encode(sealer.seal_until(Purpose::Session, expires_at_s, &payload))
    }

    /// The claims of a token and its expiry. [`SealError::Invalid`] for anything that is
    /// not a session token of this service (a static token or a JWT, perhaps).
    pub(crate) fn open(sealer: &Sealer, token: &str) -> Result<(Self, u64), SealError> {
        let sealed = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| SealError::Invalid)?;
        let (payload, expires_at_s) = sealer.open(Purpose::Session, &sealed)?;
        let claims = serde_json::from_slice(&payload).map_err(|_| SealError::Invalid)?;
        Ok((claims, expires_at_s))
    }
}
