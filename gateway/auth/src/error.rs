/// Why a caller was not let in. Messages never say which of user name or password was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "no credentials: log in with HTTP Basic (user name and password) or send 'authorization: Bearer <token>'"
    )]
    MissingCredentials,
    #[error("malformed authorization header: {0}")]
    MalformedHeader(&'static str),
    #[error("invalid user name or password")]
    BadCredentials,
    #[error("invalid or unknown bearer token; log in again")]
    InvalidToken,
    #[error("session expired; log in again")]
    Expired,
    #[error("JWT refused: {0}")]
    Jwt(String),
}

/// A principal configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("principal '{name}': {problem}")]
    Invalid { name: String, problem: String },
    #[error("principal '{0}' is declared twice")]
    DuplicateName(String),
    #[error("principals '{0}' and '{1}' have the same token")]
    DuplicateToken(String, String),
    #[error("[auth.jwt]: {0}")]
    Jwt(String),
    #[error(
        "[server] replica_secret is {0} bytes; give at least 32 (e.g. `openssl rand -base64 48`)"
    )]
    ReplicaSecret(usize),
}

/// Why sealed client state (a session token, a prepared statement's handle, a ticket) did
/// not open.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Changed, truncated, sealed for another purpose, or by a replica with another secret.
    #[error("not issued by this service (or by a replica with another replica_secret)")]
    Invalid,
    #[error("expired")]
    Expired,
}
