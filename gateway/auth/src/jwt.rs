//! Signed JWTs as bearer tokens: HS256 with a shared secret, RS256 or ES256 with a public key
//! from a PEM file. The claims name the principal (`sub`), its `role` and, for a listener,
//! its `user_id`; `exp` is required, `nbf` is enforced when present.

use std::path::PathBuf;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{AuthError, ConfigError};
use crate::principal::Role;

/// `[auth.jwt]` of the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`; tokens signed otherwise are refused.
    pub algorithm: JwtAlgorithm,
    /// The shared secret (HS256).
    #[serde(default)]
    pub secret: Option<String>,
    /// The issuer's public key, PEM (RS256, ES256).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// When set, `iss` must be present and equal.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, `aud` must be present and contain it.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_leeway() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// The claims Sluice reads.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    #[serde(default)]
    pub(crate) sub: Option<String>,
    pub(crate) role: Role,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    pub(crate) exp: u64,
}

/// Checks tokens against the configured key.
pub(crate) struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub(crate) fn new(config: &JwtConfig) -> Result<Self, ConfigError> {
        let invalid = |problem: String| ConfigError::Jwt(problem);
        let (algorithm, key) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = config.secret.as_deref().unwrap_or_default();
                // RFC 7518 3.2: the HS256 key must be at least as long as the hash.
                if secret.len() < 32 {
                    return Err(invalid(
                        "HS256 needs `secret` of at least 32 bytes".to_string(),
                    ));
                }
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.as_bytes()),
                )
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                let path = config.public_key_file.as_ref().ok_or_else(|| {
                    invalid(format!("{:?} needs public_key_file", config.algorithm))
                })?;
                let pem = std::fs::read(path)
                    .map_err(|e| invalid(format!("reading {}: {e}", path.display())))?;
                let key = if config.algorithm == JwtAlgorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem).map(|k| (Algorithm::RS256, k))
                } else {
                    DecodingKey::from_ec_pem(&pem).map(|k| (Algorithm::ES256, k))
                };
                key.map_err(|e| {
                    invalid(format!(
                        "{} is not a {:?} public key: {e}",
                        path.display(),
                        config.algorithm
                    ))
                })?
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// The token's claims, if its signature, algorithm, times, issuer and audience hold.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|t| t.claims)
            .map_err(|e| {
                AuthError::Jwt(match e.kind() {
                    ErrorKind::ExpiredSignature => "expired (exp)".to_string(),
                    ErrorKind::ImmatureSignature => "not valid yet (nbf)".to_string(),
                    ErrorKind::InvalidSignature => "the signature does not verify".to_string(),
                    ErrorKind::InvalidAlgorithm => format!(
                        "signed with another algorithm than the configured {:?}",
                        self.validation.algorithms[0]
                    ),
                    ErrorKind::InvalidIssuer => "wrong issuer (iss)".to_string(),
                    ErrorKind::InvalidAudience => "wrong audience (aud)".to_string(),
                    ErrorKind::MissingRequiredClaim(c) => format!("claim `{c}` is missing"),
                    ErrorKind::Json(e) => format!("claims: {e}"),
                    _ => "not a well-formed JWT".to_string(),
                })
            })
    }
}
