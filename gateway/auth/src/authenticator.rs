use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tracing::warn;

use crate::error::{AuthError, ConfigError};
use crate::principal::{Principal, PrincipalConfig, Role};

/// Basic credentials arrive padded (JDBC, Rust) and unpadded (ADBC, Go).
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A session token issued by a handshake, with when it stops being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    pub token: String,
    pub expires_in: Duration,
}

#[derive(Debug)]
struct Account {
    password: Option<String>,
    principal: Arc<Principal>,
}

#[derive(Debug)]
struct Session {
    principal: Arc<Principal>,
    expires: Instant,
}

/// Checks credentials and tokens. Shared by every call; cheap to query.
#[derive(Debug)]
pub struct Authenticator {
    accounts: HashMap<String, Account>,
    static_tokens: Vec<(String, Arc<Principal>)>,
    sessions: RwLock<HashMap<String, Session>>,
    session_ttl: Duration,
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

impl Authenticator {
    /// Validates the configured principals.
    pub fn new(principals: &[PrincipalConfig], session_ttl: Duration) -> Result<Self, ConfigError> {
        let mut accounts = HashMap::new();
        let mut static_tokens: Vec<(String, Arc<Principal>)> = Vec::new();
        for p in principals {
            let invalid = |problem: &str| ConfigError::Invalid {
                name: p.name.clone(),
                problem: problem.to_string(),
            };
            if p.name.is_empty() {
                return Err(invalid("the name is empty"));
            }
            match (p.role, &p.user_id) {
                (Role::Listener, None) => {
                    return Err(invalid("a listener needs user_id = \"...\""));
                }
                (Role::Listener, Some(u)) if u.is_empty() => {
                    return Err(invalid("user_id is empty"));
                }
                (Role::Analyst | Role::Admin, Some(_)) => {
                    return Err(invalid(
                        "only listeners are bound to a user_id; remove it or make the role listener",
                    ));
                }
                _ => {}
            }
            if p.password.is_none() && p.token.is_none() {
                return Err(invalid("needs a password or a token (or both)"));
            }
            if p.password.as_deref() == Some("") || p.token.as_deref() == Some("") {
                return Err(invalid("an empty password or token is not allowed"));
            }
            let principal = Arc::new(Principal::new(&p.name, p.role, p.user_id.as_deref()));
            if let Some(token) = &p.token {
                if let Some((_, other)) = static_tokens.iter().find(|(t, _)| t == token) {
                    return Err(ConfigError::DuplicateToken(
                        other.name().to_string(),
                        p.name.clone(),
                    ));
                }
                static_tokens.push((token.clone(), Arc::clone(&principal)));
            }
            let account = Account {
                password: p.password.clone(),
                principal,
            };
            if accounts.insert(p.name.clone(), account).is_some() {
                return Err(ConfigError::DuplicateName(p.name.clone()));
            }
        }
        Ok(Self {
            accounts,
            static_tokens,
            sessions: RwLock::new(HashMap::new()),
            session_ttl,
        })
    }

    /// Checks `authorization: Basic <base64(name:password)>` and opens a session.
    pub fn login_basic(&self, header: &str) -> Result<(SessionToken, Arc<Principal>), AuthError> {
        let encoded = strip_scheme(header, "basic")
            .ok_or(AuthError::MalformedHeader("expected 'Basic <base64>'"))?;
        let decoded = BASE64_ANY_PADDING
            .decode(encoded.trim())
            .map_err(|_| AuthError::MalformedHeader("Basic credentials are not base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| AuthError::MalformedHeader("Basic credentials are not UTF-8"))?;
        let (name, password) = decoded.split_once(':').ok_or(AuthError::MalformedHeader(
            "Basic credentials need 'name:password'",
        ))?;
        let account = self.accounts.get(name);
        let expected = account.and_then(|a| a.password.as_deref()).unwrap_or("");
        // Compare even for unknown names so that timing does not tell which names exist.
        let ok = constant_time_eq(password.as_bytes(), expected.as_bytes());
        match account {
            Some(a) if ok && a.password.is_some() => Ok((
                self.open_session(Arc::clone(&a.principal)),
                Arc::clone(&a.principal),
            )),
            _ => Err(AuthError::BadCredentials),
        }
    }

    fn open_session(&self, principal: Arc<Principal>) -> SessionToken {
        let token = BASE64_ANY_PADDING.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut sessions = self.sessions.write().expect("sessions lock");
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            token.clone(),
            Session {
                principal,
                expires: now + self.session_ttl,
            },
        );
        SessionToken {
            token,
            expires_in: self.session_ttl,
        }
    }

    /// Resolves `authorization: Bearer <token>` (a session token or a static token).
    pub fn check_bearer(&self, header: &str) -> Result<Arc<Principal>, AuthError> {
        let token = strip_scheme(header, "bearer")
            .ok_or(AuthError::MalformedHeader("expected 'Bearer <token>'"))?
            .trim();
        if let Some(s) = self.sessions.read().expect("sessions lock").get(token) {
            return if s.expires > Instant::now() {
                Ok(Arc::clone(&s.principal))
            } else {
                Err(AuthError::Expired)
            };
        }
        let mut found = None;
        for (t, p) in &self.static_tokens {
            if constant_time_eq(t.as_bytes(), token.as_bytes()) {
                found = Some(Arc::clone(p));
            }
        }
        found.ok_or(AuthError::InvalidToken)
    }

    /// Resolves any `authorization` header: Basic logs in, Bearer is checked.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        let header = header.ok_or(AuthError::MissingCredentials)?;
        if strip_scheme(header, "basic").is_some() {
            return self.login_basic(header).map(|(_, p)| p);
        }
        self.check_bearer(header)
    }

    /// Ends a session (CloseSession). Unknown tokens are ignored.
    pub fn close_session(&self, header: &str) {
        if let Some(token) = strip_scheme(header, "bearer") {
            self.sessions
                .write()
                .expect("sessions lock")
                .remove(token.trim());
        }
    }

    /// Names of principals with a plain-text password, for a warning at start.
    pub fn warn_plain_passwords(&self) {
        let mut names: Vec<&str> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.password.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        if !names.is_empty() && names.len() <= 3 {
            warn!(principals = ?names, "plain-text passwords in the configuration");
        } else if !names.is_empty() {
            warn!(
                count = names.len(),
                "plain-text passwords in the configuration"
            );
        }
    }
}

/// The credentials after `scheme ` (scheme matched case-insensitively).
fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let header = header.trim_start();
    let (s, rest) = header.split_at_checked(scheme.len())?;
    (s.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then(|| &rest[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Vec<PrincipalConfig> {
        vec![
            PrincipalConfig {
                name: "u0001".into(),
                password: Some("u0001".into()),
                token: None,
                role: Role::Listener,
                user_id: Some("u0001".into()),
            },
            PrincipalConfig {
                name: "analyst".into(),
                password: Some("analyst".into()),
                token: Some("static-analyst-token".into()),
                role: Role::Analyst,
                user_id: None,
            },
        ]
    }

    fn auth() -> Authenticator {
        Authenticator::new(&config(), Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn basic_padded_and_unpadded() {
        let a = auth();
        // "u0001:u0001" is 11 bytes: its base64 has one '=' of padding.
        let padded = BASE64_ANY_PADDING.encode("u0001:u0001");
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        for h in [format!("Basic {padded}"), format!("basic {unpadded}")] {
            let (token, p) = a.login_basic(&h).unwrap();
            assert_eq!(p.scope(), Some("u0001"));
            let again = a.check_bearer(&format!("Bearer {}", token.token)).unwrap();
            assert_eq!(again, p);
        }
    }

    #[test]
    fn wrong_password_unknown_user_and_bad_tokens() {
        let a = auth();
        let bad = |s: &str| format!("Basic {}", BASE64_ANY_PADDING.encode(s));
        assert_eq!(
            a.login_basic(&bad("u0001:nope")).unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            a.login_basic(&bad("who:u0001")).unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            a.check_bearer("Bearer nope").unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(
            a.authenticate(None).unwrap_err(),
            AuthError::MissingCredentials
        );
        assert!(matches!(
            a.check_bearer("Token x"),
            Err(AuthError::MalformedHeader(_))
        ));
        let p = a.check_bearer("Bearer static-analyst-token").unwrap();
        assert_eq!((p.role(), p.scope()), (Role::Analyst, None));
    }

    #[test]
    fn sessions_expire_and_close() {
        let a = Authenticator::new(&config(), Duration::from_millis(0)).unwrap();
        let (t, _) = a
            .login_basic(&format!(
                "Basic {}",
                BASE64_ANY_PADDING.encode("u0001:u0001")
            ))
            .unwrap();
        assert_eq!(
            a.check_bearer(&format!("Bearer {}", t.token)).unwrap_err(),
            AuthError::Expired
        );
        let a = auth();
        let (t, _) = a
            .login_basic(&format!(
                "Basic {}",
                BASE64_ANY_PADDING.encode("u0001:u0001")
            ))
            .unwrap();
        a.close_session(&format!("Bearer {}", t.token));
        assert_eq!(
            a.check_bearer(&format!("Bearer {}", t.token)).unwrap_err(),
            AuthError::InvalidToken
        );
    }

    #[test]
    fn rejects_unusable_principals() {
        let mut c = config();
        c[0].user_id = None;
        assert!(Authenticator::new(&c, Duration::from_secs(1)).is_err());
        let mut c = config();
        c[1].user_id = Some("u0002".into());
        assert!(Authenticator::new(&c, Duration::from_secs(1)).is_err());
        let mut c = config();
        c.push(c[0].clone());
        assert_eq!(
            Authenticator::new(&c, Duration::from_secs(1)).unwrap_err(),
            ConfigError::DuplicateName("u0001".into())
        );
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
