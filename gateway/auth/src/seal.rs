//! What a client carries between calls (session tokens, prepared-statement handles,
//! tickets), sealed so that any replica holding the same secret can open it and nobody else
//! can read or change it: AES-256-GCM under a key derived (HKDF-SHA256) from
//! `[server] replica_secret`, with the expiry inside and what the bytes are for as
//! associated data, so that a ticket cannot pass for a token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{ConfigError, SealError};

/// The shortest replica secret accepted, in bytes.
pub const MIN_REPLICA_SECRET_BYTES: usize = 32;

/// The format's first byte; one that is not this is refused, so the format can change.
const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const EXPIRY_LEN: usize = 8;

/// What sealed bytes are for; each opens only as what it was sealed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A session token, issued by the handshake.
    Session,
    /// A prepared statement's handle.
    PreparedStatement,
    /// A ticket for a query's results.
    Ticket,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::Session => b"sluice session token",
            Self::PreparedStatement => b"sluice prepared statement",
            Self::Ticket => b"sluice ticket",
        }
    }
}

/// Seals and opens what clients carry; shared by every replica given the same secret.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
    /// Whether the key comes from a configured secret (other replicas can open what this
    /// one seals) or was made at random for this process.
    shared: bool,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Sealer {
    /// A sealer every replica configured with `secret` shares.
    pub fn from_secret(secret: &str) -> Result<Self, ConfigError> {
        if secret.len() < MIN_REPLICA_SECRET_BYTES {
            return Err(ConfigError::ReplicaSecret(secret.len()));
        }
        Ok(Self::derive(secret.as_bytes(), true))
    }

    /// A sealer of this process alone (no `replica_secret`): what it seals opens nowhere
    /// else, and not after a restart.
    pub fn random() -> Self {
        Self::derive(&rand::random::<[u8; 32]>(), false)
    }

    fn derive(secret: &[u8], shared: bool) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"sluice replica secret").extract(secret);
        let okm = prk
            .expand(&[b"sealed client state v1"], &AES_256_GCM)
            .expect("AES-256 key length is a valid HKDF output length");
        Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            random: SystemRandom::new(),
            shared,
        }
    }

    /// Whether other replicas with the same secret open what this one seals.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Seals `payload` for `purpose`, to be opened until `ttl` from now.
    pub fn seal(&self, purpose: Purpose, ttl: Duration, payload: &[u8]) -> Vec<u8> {
        self.seal_until(purpose, now_s().saturating_add(ttl.as_secs()), payload)
    }

    /// Seals `payload` for `purpose`, to be opened until `expires_at_s` (Unix seconds).
    pub fn seal_until(&self, purpose: Purpose, expires_at_s: u64, payload: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + EXPIRY_LEN + payload.len() + TAG_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        let mut body = Vec::with_capacity(EXPIRY_LEN + payload.len() + TAG_LEN);
        body.extend_from_slice(&expires_at_s.to_be_bytes());
        body.extend_from_slice(payload);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.aad()),
                &mut body,
            )
            .expect("sealing a buffer in memory");
        sealed.extend_from_slice(&body);
        sealed
    }

    /// Opens what [`Self::seal`] sealed for `purpose`: its payload and its expiry (Unix
    /// seconds). Anything changed, sealed under another secret or for another purpose is
    /// [`SealError::Invalid`]; past its expiry, [`SealError::Expired`].
    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<(Vec<u8>, u64), SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Invalid)?;
        if version != VERSION || rest.len() < NONCE_LEN + EXPIRY_LEN + TAG_LEN {
            return Err(SealError::Invalid);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Invalid)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.aad()), &mut body)
            .map_err(|_| SealError::Invalid)?;
        let (expiry, payload) = plain.split_at(EXPIRY_LEN);
        let expires_at_s = u64::from_be_bytes(expiry.try_into().expect("8 bytes"));
        if now_s() >= expires_at_s {
            return Err(SealError::Expired);
        }
        Ok((payload.to_vec(), expires_at_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn replicas_with_one_secret_open_each_others_and_nothing_else() {
        let a = Sealer::from_secret(SECRET).unwrap();
        let b = Sealer::from_secret(SECRET).unwrap();
        let sealed = a.seal(Purpose::Ticket, Duration::from_secs(60), b"select 1");
        let (payload, _) = b.open(Purpose::Ticket, &sealed).unwrap();
        assert_eq!(payload, b"select 1");
        assert!(
            !sealed.windows(8).any(|w| w == b"select 1"),
            "the content is not readable"
        );
        assert_eq!(
            b.open(Purpose::Session, &sealed),
            Err(SealError::Invalid),
            "a ticket is not a token"
        );
        let other = Sealer::from_secret(&format!("{SECRET}!")).unwrap();
        assert_eq!(
            other.open(Purpose::Ticket, &sealed),
            Err(SealError::Invalid)
        );
        assert_eq!(
            Sealer::random().open(Purpose::Ticket, &sealed),
            Err(SealError::Invalid)
        );
        for i in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[i] ^= 1;
            assert!(b.open(Purpose::Ticket, &changed).is_err(), "byte {i}");
        }
        assert_eq!(
            b.open(Purpose::Ticket, &sealed[..20]),
            Err(SealError::Invalid)
        );
        assert_eq!(b.open(Purpose::Ticket, b""), Err(SealError::Invalid));
    }

    #[test]
    fn sealed_bytes_expire_and_short_secrets_are_refused() {
        let a = Sealer::from_secret(SECRET).unwrap();
        let past = a.seal_until(Purpose::Session, now_s(), b"x");
        assert_eq!(a.open(Purpose::Session, &past), Err(SealError::Expired));
        let (_, expires) = a
            .open(
                Purpose::Session,
                &a.seal(Purpose::Session, Duration::from_secs(100), b"x"),
            )
            .unwrap();
        assert!(expires >= now_s() + 99);
        assert_eq!(
            Sealer::from_secret(&SECRET[1..]).unwrap_err(),
            ConfigError::ReplicaSecret(31)
        );
        assert!(Sealer::from_secret(SECRET).unwrap().is_shared());
        assert!(!Sealer::random().is_shared());
    }
}
