use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tracing::warn;

use crate::error::{AuthError, ConfigError, SealError};
use crate::jwt::{JwtConfig, JwtVerifier};
use crate::password::{StoredHash, hash_password};
use crate::principal::{Limits, Principal, PrincipalConfig, Role};
use crate::seal::Sealer;
use crate::session::{Session, SessionClaims, SessionKind};

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

/// How logins work beyond the principals themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOptions {
    /// Lifetime of a session token issued by the handshake.
    pub session_ttl: Duration,
    /// Signed JWTs accepted as bearer tokens.
    pub jwt: Option<JwtConfig>,
    /// Limits of principals that set none of their own (every JWT principal).
    pub limits: Limits,
    /// `[server] replica_secret`: replicas sharing it accept each other's session tokens
    /// (and, through [`Authenticator::sealer`], handles and tickets). `None`: a secret of
    /// this process alone.
    pub replica_secret: Option<String>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(12 * 3600),
            jwt: None,
            limits: Limits::default(),
            replica_secret: None,
        }
    }
}

#[derive(Debug)]
enum Secret {
    Plain(String),
    Hash(StoredHash),
}

#[derive(Debug)]
struct Account {
    secret: Option<Secret>,
    principal: Arc<Principal>,
}

/// What a bearer token turned out to be.
#[derive(Debug)]
enum Bearer {
    /// A session token from a handshake.
    Session(Session),
    /// A static token from the configuration.
    Static,
    /// A JWT, with the time left before its `exp`.
    Jwt { left: Duration },
}

/// Checks credentials and tokens. Shared by every call; cheap to query.
#[derive(Debug)]
pub struct Authenticator {
    accounts: HashMap<String, Account>,
    static_tokens: Vec<(String, Arc<Principal>)>,
    jwt: Option<JwtVerifier>,
    /// Verified for unknown names, so that a wrong name costs what a wrong password does.
    decoy: Option<StoredHash>,
    sealer: Sealer,
    /// Sessions closed here (CloseSession), by id, until their tokens expire (Unix s).
    closed: RwLock<HashMap<String, u64>>,
    session_ttl: Duration,
    limits: Limits,
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// Checks what a principal's configuration (file or JWT claims) says about its role.
fn check_role(role: Role, user_id: Option<&str>) -> Result<(), &'static str> {
    match (role, user_id) {
        (Role::Listener, None) => Err("a listener needs user_id = \"...\""),
        (Role::Listener, Some("")) => Err("user_id is empty"),
        (Role::Analyst | Role::Admin, Some(_)) => {
            Err("only listeners are bound to a user_id; remove it or make the role listener")
        }
        _ => Ok(()),
    }
}

impl Authenticator {
    /// Validates the configured principals and JWT key.
    pub fn new(principals: &[PrincipalConfig], options: &AuthOptions) -> Result<Self, ConfigError> {
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
            check_role(p.role, p.user_id.as_deref()).map_err(invalid)?;
            let secret = match (&p.password, &p.password_hash) {
                (Some(_), Some(_)) => {
                    return Err(invalid("set password or password_hash, not both"));
                }
                (Some(plain), None) => Some(Secret::Plain(plain.clone())),
                (None, Some(phc)) => Some(Secret::Hash(
                    StoredHash::parse(phc).map_err(|e| invalid(&e))?,
                )),
                (None, None) => None,
            };
            if secret.is_none() && p.token.is_none() {
                return Err(invalid("needs a password, a password_hash or a token"));
            }
            if p.password.as_deref() == Some("") || p.token.as_deref() == Some("") {
                return Err(invalid("an empty password or token is not allowed"));
            }
            let limits = p.limits.over(options.limits).map_err(|e| invalid(&e))?;
            let principal =
                Arc::new(Principal::new(&p.name, p.role, p.user_id.as_deref()).with_limits(limits));
            if let Some(token) = &p.token {
                if let Some((_, other)) = static_tokens.iter().find(|(t, _)| t == token) {
                    return Err(ConfigError::DuplicateToken(
                        other.name().to_string(),
                        p.name.clone(),
                    ));
                }
                static_tokens.push((token.clone(), Arc::clone(&principal)));
            }
            if accounts
                .insert(p.name.clone(), Account { secret, principal })
                .is_some()
            {
                return Err(ConfigError::DuplicateName(p.name.clone()));
            }
        }
        let decoy = accounts
            .values()
            .any(|a| matches!(a.secret, Some(Secret::Hash(_))))
            .then(|| {
                let phc = hash_password("decoy").expect("hashing a constant with a fresh salt");
                StoredHash::parse(&phc).expect("a hash just made parses")
            });
        Ok(Self {
            accounts,
            static_tokens,
            jwt: options.jwt.as_ref().map(JwtVerifier::new).transpose()?,
            decoy,
            sealer: match &options.replica_secret {
                Some(secret) => Sealer::from_secret(secret)?,
                None => Sealer::random(),
            },
            closed: RwLock::new(HashMap::new()),
            session_ttl: options.session_ttl,
            limits: options.limits,
        })
    }

    /// Checks `authorization: Basic <base64(name:password)>`.
    fn check_basic(&self, header: &str) -> Result<Arc<Principal>, AuthError> {
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
        // Check even for unknown names so that timing does not tell which names exist.
        let ok = match account.and_then(|a| a.secret.as_ref()) {
            Some(Secret::Plain(expected)) => {
                constant_time_eq(password.as_bytes(), expected.as_bytes())
            }
            Some(Secret::Hash(hash)) => hash.verify(password),
            None => {
                match &self.decoy {
                    Some(decoy) => decoy.verify(password),
                    None => constant_time_eq(password.as_bytes(), b""),
                };
                false
            }
        };
        match account {
            Some(a) if ok => Ok(Arc::clone(&a.principal)),
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Checks `authorization: Basic <base64(name:password)>` and opens a session.
    pub fn login_basic(&self, header: &str) -> Result<(SessionToken, Arc<Principal>), AuthError> {
        let principal = self.check_basic(header)?;
        let session = self.new_session(&principal, false, self.session_ttl, random_id());
        Ok((self.reissue(&session), principal))
    }

    /// Logs in with any `authorization` header (Basic, a static token, a JWT or a session
    /// token) and returns a session token for the calls that follow. A session opened from a
    /// JWT ends when the JWT does.
    pub fn login(&self, header: Option<&str>) -> Result<(SessionToken, Arc<Principal>), AuthError> {
        let header = header.ok_or(AuthError::MissingCredentials)?;
        if strip_scheme(header, "basic").is_some() {
            return self.login_basic(header);
        }
        let (principal, bearer) = self.resolve_bearer(header)?;
        let session = match bearer {
            // Already a session token: the client keeps it (and its session's settings).
            Bearer::Session(session) => session,
            Bearer::Static => self.new_session(&principal, false, self.session_ttl, random_id()),
            Bearer::Jwt { left } => {
                self.new_session(&principal, true, left.min(self.session_ttl), random_id())
            }
        };
        Ok((self.reissue(&session), principal))
    }

    fn new_session(&self, principal: &Principal, jwt: bool, ttl: Duration, id: String) -> Session {
        Session {
            claims: SessionClaims {
                id,
                who: principal.identity(),
                jwt,
                settings: Default::default(),
                version: 0,
            },
            kind: SessionKind::Credentials,
            expires_at_s: now_s().saturating_add(ttl.as_secs()),
        }
    }

    /// A token for `session` as it is now (its settings included), ending when it does.
    /// Any replica sharing the secret resumes the session from it.
    pub fn reissue(&self, session: &Session) -> SessionToken {
        SessionToken {
            token: session.claims.seal(&self.sealer, session.expires_at_s),
            expires_in: Duration::from_secs(session.expires_at_s.saturating_sub(now_s())),
        }
    }

    /// What seals the state clients carry between calls (handles, tickets): shared by the
    /// replicas with the same `replica_secret`.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Resolves `authorization: Bearer <token>` (a session token, a static token or a JWT).
    pub fn check_bearer(&self, header: &str) -> Result<Arc<Principal>, AuthError> {
        self.resolve_bearer(header).map(|(p, _)| p)
    }

    /// The principal of a bearer token, and what kind of token it is.
    fn resolve_bearer(&self, header: &str) -> Result<(Arc<Principal>, Bearer), AuthError> {
        let token = strip_scheme(header, "bearer")
            .ok_or(AuthError::MalformedHeader("expected 'Bearer <token>'"))?
            .trim();
        match SessionClaims::open(&self.sealer, token) {
            Ok((claims, expires_at_s)) => {
                if self
                    .closed
                    .read()
                    .expect("closed sessions lock")
                    .contains_key(&claims.id)
                {
                    return Err(AuthError::InvalidToken);
                }
                let principal = self.session_principal(&claims)?;
                let session = Session {
                    claims,
                    kind: SessionKind::Token,
                    expires_at_s,
                };
                return Ok((principal, Bearer::Session(session)));
            }
            Err(SealError::Expired) => return Err(AuthError::Expired),
            // Not a session token of this service: perhaps a static token or a JWT.
            Err(SealError::Invalid) => {}
        }
        let mut found = None;
        for (t, p) in &self.static_tokens {
            if constant_time_eq(t.as_bytes(), token.as_bytes()) {
                found = Some(Arc::clone(p));
            }
        }
        if let Some(p) = found {
            return Ok((p, Bearer::Static));
        }
        match &self.jwt {
            // A JWT is three base64url parts; anything else is an unknown opaque token.
            Some(jwt) if token.split('.').count() == 3 => {
                let claims = jwt.verify(token)?;
                let principal = self.jwt_principal(
                    claims.sub.as_deref().unwrap_or_default(),
                    claims.role,
                    claims.user_id.as_deref(),
                )?;
                let left = Duration::from_secs(claims.exp.saturating_sub(now_s()));
                Ok((principal, Bearer::Jwt { left }))
            }
            _ => Err(AuthError::InvalidToken),
        }
    }

    /// The principal a session token names: rebuilt from a JWT's claims, or the configured
    /// principal of that name, which must still be what it was at login.
    fn session_principal(&self, claims: &SessionClaims) -> Result<Arc<Principal>, AuthError> {
        let who = &claims.who;
        if claims.jwt {
            return self.jwt_principal(&who.name, who.role, who.user_id.as_deref());
        }
        match self.accounts.get(&who.name) {
            Some(a) if who.is(&a.principal) => Ok(Arc::clone(&a.principal)),
            // Removed, or given another role or listener since: its sessions end.
            _ => Err(AuthError::InvalidToken),
        }
    }

    fn jwt_principal(
        &self,
        sub: &str,
        role: Role,
        user_id: Option<&str>,
    ) -> Result<Arc<Principal>, AuthError> {
        if sub.is_empty() {
            return Err(AuthError::Jwt("claim `sub` is missing".into()));
        }
        check_role(role, user_id).map_err(|e| AuthError::Jwt(format!("claims: {e}")))?;
        Ok(Arc::new(
            Principal::new(sub, role, user_id).with_limits(self.limits),
        ))
    }

    /// Resolves any `authorization` header: Basic is checked, Bearer resolved. The
    /// session is the token's, or, for credentials sent on every call, one under an id
    /// derived from them (the same on every call and replica).
    pub fn authenticate(
        &self,
        header: Option<&str>,
    ) -> Result<(Arc<Principal>, Session), AuthError> {
        let header = header.ok_or(AuthError::MissingCredentials)?;
        if strip_scheme(header, "basic").is_some() {
            let principal = self.check_basic(header)?;
            let session = self.new_session(&principal, false, self.session_ttl, derived_id(header));
            return Ok((principal, session));
        }
        let (principal, bearer) = self.resolve_bearer(header)?;
        let session = match bearer {
            Bearer::Session(session) => session,
            Bearer::Static => {
                self.new_session(&principal, false, self.session_ttl, derived_id(header))
            }
            Bearer::Jwt { left } => self.new_session(
                &principal,
                true,
                left.min(self.session_ttl),
                derived_id(header),
            ),
        };
        Ok((principal, session))
    }

    /// Ends a session (CloseSession): its token is refused here from now on. Other
    /// replicas accept it until it expires; credentials sent on every call stay valid.
    pub fn close_session(&self, session: &Session) {
        if !session.from_token() {
            return;
        }
        let now = now_s();
        let mut closed = self.closed.write().expect("closed sessions lock");
        closed.retain(|_, expires| *expires > now);
        closed.insert(session.claims.id.clone(), session.expires_at_s);
    }

    /// Warns about principals with a plain-text password.
    pub fn warn_plain_passwords(&self) {
        let mut names: Vec<&str> = self
            .accounts
            .iter()
            .filter(|(_, a)| matches!(a.secret, Some(Secret::Plain(_))))
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        let hint = "store password_hash (from `sluice hash-password`) instead";
        if !names.is_empty() && names.len() <= 3 {
            warn!(principals = ?names, hint, "plain-text passwords in the configuration");
        } else if !names.is_empty() {
            warn!(
                count = names.len(),
                hint, "plain-text passwords in the configuration"
            );
        }
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A new session's id.
fn random_id() -> String {
    hex(&rand::random::<[u8; 16]>())
}

/// The session id of credentials sent on every call: the same for the same header.
fn derived_id(header: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, header.as_bytes());
    hex(&digest.as_ref()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    const BASE64_URL: GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn config() -> Vec<PrincipalConfig> {
        vec![
            PrincipalConfig {
                name: "u0001".into(),
                password: Some("u0001".into()),
                password_hash: None,
                token: None,
                role: Role::Listener,
                user_id: Some("u0001".into()),
                limits: Default::default(),
            },
            PrincipalConfig {
                name: "analyst".into(),
                password: Some("analyst".into()),
                password_hash: None,
                token: Some("static-analyst-token".into()),
                role: Role::Analyst,
                user_id: None,
                limits: Default::default(),
            },
        ]
    }

    fn ttl(ms: u64) -> AuthOptions {
        AuthOptions {
            session_ttl: Duration::from_millis(ms),
            ..AuthOptions::default()
        }
    }

    fn auth() -> Authenticator {
        Authenticator::new(&config(), &ttl(60_000)).unwrap()
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
        let a = Authenticator::new(&config(), &ttl(0)).unwrap();
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
        let bearer = format!("Bearer {}", t.token);
        let (_, session) = a.authenticate(Some(&bearer)).unwrap();
        assert!(session.from_token());
        a.close_session(&session);
        assert_eq!(
            a.check_bearer(&bearer).unwrap_err(),
            AuthError::InvalidToken
        );
        // A static token's session closes without the token being refused.
        let (_, session) = a.authenticate(Some("Bearer static-analyst-token")).unwrap();
        assert!(!session.from_token());
        a.close_session(&session);
        assert!(a.check_bearer("Bearer static-analyst-token").is_ok());
    }

    fn replica(secret: &str) -> Authenticator {
        let options = AuthOptions {
            replica_secret: Some(secret.into()),
            ..ttl(60_000)
        };
        Authenticator::new(&config(), &options).unwrap()
    }

    #[test]
    fn replicas_sharing_a_secret_resume_each_others_sessions_and_settings() {
        let (a, b) = (replica(SECRET), replica(SECRET));
        let basic = format!("Basic {}", BASE64_ANY_PADDING.encode("u0001:u0001"));
        let (t, p) = a.login(Some(&basic)).unwrap();
        let bearer = format!("Bearer {}", t.token);
        let (on_b, session) = b.authenticate(Some(&bearer)).unwrap();
        assert_eq!(on_b, p);
        assert_eq!((session.version(), session.settings().len()), (0, 0));

        // Settings changed on b travel in the reissued token, to a.
        let settings = [("sluice.route".to_string(), "cold".to_string())].into();
        let changed = b.reissue(&session.clone().with_settings(settings, 1));
        assert!(changed.expires_in <= t.expires_in);
        let (_, resumed) = a
            .authenticate(Some(&format!("Bearer {}", changed.token)))
            .unwrap();
        assert_eq!(resumed.id(), session.id());
        assert_eq!(resumed.version(), 1);
        assert_eq!(resumed.settings()["sluice.route"], "cold");

        // Another secret, or none, opens nothing.
        assert_eq!(
            replica(&format!("{SECRET}-other"))
                .check_bearer(&bearer)
                .unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(
            auth().check_bearer(&bearer).unwrap_err(),
            AuthError::InvalidToken
        );

        // A principal whose configuration changed since its login is logged out.
        let mut moved = config();
        moved[0].user_id = Some("u0002".into());
        let options = AuthOptions {
            replica_secret: Some(SECRET.into()),
            ..ttl(60_000)
        };
        let c = Authenticator::new(&moved, &options).unwrap();
        assert_eq!(
            c.check_bearer(&bearer).unwrap_err(),
            AuthError::InvalidToken
        );

        // Credentials sent on every call keep one session id, on every replica.
        let (_, s1) = a.authenticate(Some("Bearer static-analyst-token")).unwrap();
        let (_, s2) = b.authenticate(Some("Bearer static-analyst-token")).unwrap();
        assert_eq!(s1.id(), s2.id());
        let (_, s3) = a.authenticate(Some(&basic)).unwrap();
        assert_ne!(s3.id(), s1.id());
    }

    #[test]
    fn rejects_unusable_principals() {
        let mut c = config();
        c[0].user_id = None;
        assert!(Authenticator::new(&c, &ttl(1000)).is_err());
        let mut c = config();
        c[1].user_id = Some("u0002".into());
        assert!(Authenticator::new(&c, &ttl(1000)).is_err());
        let mut c = config();
        c.push(c[0].clone());
        assert_eq!(
            Authenticator::new(&c, &ttl(1000)).unwrap_err(),
            ConfigError::DuplicateName("u0001".into())
        );
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn with_jwt(issuer: Option<&str>) -> Authenticator {
        let options = AuthOptions {
            jwt: Some(JwtConfig {
                algorithm: crate::JwtAlgorithm::HS256,
                secret: Some(SECRET.into()),
                public_key_file: None,
                issuer: issuer.map(Into::into),
                audience: None,
                leeway_secs: 0,
            }),
            ..AuthOptions::default()
        };
        Authenticator::new(&config(), &options).unwrap()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn jwt(claims: serde_json::Value, alg: jsonwebtoken::Algorithm, secret: &str) -> String {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        format!("Bearer {token}")
    }

    #[test]
    fn jwts_give_principal_and_are_checked() {
        use jsonwebtoken::Algorithm::{HS256, HS384};
        use serde_json::json;
        let a = with_jwt(None);
        let exp = now() + 600;
        let good = jwt(
            json!({"sub": "agent-7", "role": "listener", "user_id": "u0009", "exp": exp}),
            HS256,
            SECRET,
        );
        let p = a.check_bearer(&good).unwrap();
        assert_eq!(
            (p.name(), p.role(), p.scope()),
            ("agent-7", Role::Listener, Some("u0009"))
        );
        // The handshake's session ends when the JWT does.
        let (session, _) = a.login(Some(&good)).unwrap();
        assert!(session.expires_in <= Duration::from_secs(600));
        assert_eq!(
            a.check_bearer(&format!("Bearer {}", session.token))
                .unwrap(),
            p
        );

        let refused = |claims: serde_json::Value, alg, secret: &str| match a
            .check_bearer(&jwt(claims, alg, secret))
        {
            Err(AuthError::Jwt(why)) => why,
            other => panic!("accepted or wrong error: {other:?}"),
        };
        let listener = |extra: serde_json::Value| {
            let mut c =
                json!({"sub": "agent-7", "role": "listener", "user_id": "u0009", "exp": exp});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        assert_eq!(
            refused(listener(json!({"exp": now() - 120})), HS256, SECRET),
            "expired (exp)"
        );
        assert_eq!(
            refused(listener(json!({"nbf": now() + 120})), HS256, SECRET),
            "not valid yet (nbf)"
        );
        assert_eq!(
            refused(
                listener(json!({})),
                HS256,
                "another secret of thirty-two bytes!"
            ),
            "the signature does not verify"
        );
        assert!(
            refused(listener(json!({})), HS384, SECRET)
                .starts_with("signed with another algorithm")
        );
        assert_eq!(
            refused(json!({"role": "analyst", "exp": exp}), HS256, SECRET),
            "claim `sub` is missing"
        );
        assert!(
            refused(
                json!({"sub": "x", "role": "listener", "exp": exp}),
                HS256,
                SECRET
            )
            .contains("user_id")
        );
        assert!(
            refused(
                json!({"sub": "x", "role": "root", "exp": exp}),
                HS256,
                SECRET
            )
            .starts_with("claims:")
        );
        assert!(
            refused(
                json!({"sub": "x", "role": "analyst", "user_id": "u1", "exp": exp}),
                HS256,
                SECRET
            )
            .contains("only listeners")
        );
        // An unsigned token ("alg": "none") is not a JWT Sluice accepts.
        let none = format!(
            "Bearer {}.{}.",
            BASE64_URL.encode(r#"{"alg":"none","typ":"JWT"}"#),
            BASE64_URL.encode(json!({"sub": "x", "role": "admin", "exp": exp}).to_string())
        );
        assert!(matches!(a.check_bearer(&none), Err(AuthError::Jwt(_))));

        let a = with_jwt(Some("https://idp.example"));
        assert_eq!(
            refused_by(&a, listener(json!({}))),
            "claim `iss` is missing"
        );
        assert_eq!(
            refused_by(&a, listener(json!({"iss": "https://evil.example"}))),
            "wrong issuer (iss)"
        );
        assert!(
            a.check_bearer(&jwt(
                listener(json!({"iss": "https://idp.example"})),
                HS256,
                SECRET
            ))
            .is_ok()
        );
    }

    fn refused_by(a: &Authenticator, claims: serde_json::Value) -> String {
        match a.check_bearer(&jwt(claims, jsonwebtoken::Algorithm::HS256, SECRET)) {
            Err(AuthError::Jwt(why)) => why,
            other => panic!("accepted or wrong error: {other:?}"),
        }
    }

    #[test]
    fn short_hs256_secrets_and_missing_keys_are_refused_at_start() {
        let mut options = AuthOptions {
            jwt: Some(JwtConfig {
                algorithm: crate::JwtAlgorithm::HS256,
                secret: Some("short".into()),
                public_key_file: None,
                issuer: None,
                audience: None,
                leeway_secs: 0,
            }),
            ..AuthOptions::default()
        };
        assert!(Authenticator::new(&config(), &options).is_err());
        options.jwt.as_mut().unwrap().algorithm = crate::JwtAlgorithm::ES256;
        assert!(Authenticator::new(&config(), &options).is_err());
    }

    #[test]
    fn hashed_passwords_log_in_and_limits_apply() {
        let mut c = config();
        c[0].password = None;
        c[0].password_hash = Some(hash_password("correct horse").unwrap());
        c[0].limits.max_rows = Some(10);
        let a = Authenticator::new(&c, &AuthOptions::default()).unwrap();
        let basic = |s: &str| format!("Basic {}", BASE64_ANY_PADDING.encode(s));
        let (_, p) = a.login_basic(&basic("u0001:correct horse")).unwrap();
        assert_eq!(p.limits().max_rows, Some(10));
        assert_eq!(p.limits().max_concurrent_queries, 16);
        assert_eq!(
            a.login_basic(&basic("u0001:u0001")).unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            a.login_basic(&basic("nobody:correct horse")).unwrap_err(),
            AuthError::BadCredentials
        );
        c[0].password = Some("both".into());
        assert!(Authenticator::new(&c, &AuthOptions::default()).is_err());
        c[0].password = None;
        c[0].password_hash = Some("plain text".into());
        assert!(Authenticator::new(&c, &AuthOptions::default()).is_err());
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
