//! Authentication and sessions, between the Flight SQL service (upstream) and the planner
//! (downstream): who a caller is and what it may read. [`Authenticator`] is the entry point:
//! it checks HTTP Basic credentials or a static token, issues session tokens, and resolves a
//! bearer token to a [`Principal`], whose [`Principal::scope`] the planner enforces.

mod authenticator;
mod error;
mod principal;

pub use authenticator::{Authenticator, SessionToken};
pub use error::{AuthError, ConfigError};
pub use principal::{Principal, PrincipalConfig, Role};
