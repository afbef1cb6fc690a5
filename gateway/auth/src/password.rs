//! Password hashes for `password_hash`: Argon2id in the PHC string format
//! (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), as `sluice hash-password` prints them.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashes `password` with a fresh random salt and Argon2id's recommended parameters.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("making a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

/// A parsed `password_hash`, checked once at start so a typo fails there, not at login.
#[derive(Debug)]
pub(crate) struct StoredHash(String);

impl StoredHash {
    pub(crate) fn parse(phc: &str) -> Result<Self, String> {
        let parsed = PasswordHash::new(phc).map_err(|e| {
            format!("password_hash is not a PHC string (make one with `sluice hash-password`): {e}")
        })?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(format!(
                "password_hash uses {}; Sluice accepts argon2id (from `sluice hash-password`)",
                parsed.algorithm
            ));
        }
        Ok(Self(phc.to_string()))
    }

    /// Whether `password` matches; Argon2's comparison of the digests is constant time.
    pub(crate) fn verify(&self, password: &str) -> bool {
        PasswordHash::new(&self.0).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash_password("s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let stored = StoredHash::parse(&phc).unwrap();
        assert!(stored.verify("s3cret"));
        assert!(!stored.verify("s3cret "));
        assert!(!stored.verify(""));
        // Salted: the same password hashes differently each time.
        assert_ne!(phc, hash_password("s3cret").unwrap());
    }

    #[test]
    fn malformed_and_foreign_hashes_are_refused_at_start() {
        assert!(StoredHash::parse("s3cret").is_err());
        assert!(StoredHash::parse("$2b$12$abcdefghijklmnopqrstuv").is_err());
    }
}
