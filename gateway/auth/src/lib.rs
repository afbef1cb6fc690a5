//! Authentication and sessions, between the Flight SQL service (upstream) and the planner
//! (downstream): who a caller is, what it may read and how much it may take.
//! [`Authenticator`] is the entry point: it checks HTTP Basic credentials (plain or Argon2id
//! hashed passwords), static tokens and signed JWTs, issues session tokens, and resolves a
//! bearer token to a [`Principal`], whose [`Principal::scope`] the planner enforces and whose
//! [`Principal::limits`] the Flight service does.

mod authenticator;
mod error;
mod jwt;
mod password;
mod principal;
mod seal;
mod session;

pub use authenticator::{AuthOptions, Authenticator, SessionToken};
pub use error::{AuthError, ConfigError, SealError};
pub use jwt::{JwtAlgorithm, JwtConfig};
pub use password::hash_password;
pub use principal::{Identity, Limits, LimitsConfig, Principal, PrincipalConfig, Role};
pub use seal::{MIN_REPLICA_SECRET_BYTES, Purpose, Sealer};
pub use session::Session;
