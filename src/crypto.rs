//! The only user of `ring`: randomness, keyed hashes, sealing, constant-time checks.
//!
//! Everything secret that tokenwarden stores goes through [`Keys`], which is derived from one
//! server secret. A copy of the database without that secret holds nothing usable: token values
//! and client secrets are stored as HMAC-SHA256 digests, and the one value that must be handed back
//! unchanged (a site's primary token) is sealed with AES-256-GCM. See `docs/security.md`.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, hkdf, hmac};

/// Length of the server secret and of every derived key.
pub const SECRET_LEN: usize = 32;

/// The operating system's random source failed; nothing can be minted safely.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomnessUnavailable;

/// A sealed value did not open: wrong key, wrong associated data or tampered bytes.
#[derive(Debug, thiserror::Error)]
#[error("a sealed value could not be opened with the server secret")]
pub struct UnsealFailed;

/// SHA-256 of public content (no key): for cache validators such as the admin page's ETags.
pub fn content_digest(content: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

/// Fills a fresh array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomnessUnavailable> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomnessUnavailable)?;
    Ok(bytes)
}

/// The root secret every key is derived from. `Debug` is redacted and there is no `Display`.
#[derive(Clone)]
pub struct ServerSecret([u8; SECRET_LEN]);

impl ServerSecret {
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        random_bytes().map(Self)
    }

    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for writing the secret file only.
    pub fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

/// A keyed digest as stored in the database. Useless without the server secret.
pub type Digest = Vec<u8>;

/// Keys derived from the server secret with HKDF-SHA256 (RFC 5869), one per purpose, so that a
/// digest made for one purpose can never be replayed as another.
pub struct Keys {
    token_lookup: hmac::Key,
    client_secret: hmac::Key,
    listing_cursor: hmac::Key,
    /// SipHash keys of the throttle's client-id hash (`domain::throttle`): the same on every node.
    throttle_hash: (u64, u64),
    sealing: aead::LessSafeKey,
}

/// An HKDF output length of 16 bytes.
struct SixteenBytes;

impl hkdf::KeyType for SixteenBytes {
    fn len(&self) -> usize {
        16
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

const SEAL_NONCE_LEN: usize = aead::NONCE_LEN;

impl Keys {
    pub fn derive(secret: &ServerSecret) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tokenwarden v1").extract(&secret.0);
        let hmac_key = |label: &[u8]| -> hmac::Key {
            let info = [label];
            let okm = prk
                .expand(&info, hmac::HMAC_SHA256)
                .expect("HKDF-SHA256 can always produce one 32-byte block");
            hmac::Key::from(okm)
        };
        let info = [&b"primary token sealing"[..]];
        let sealing_key: aead::UnboundKey = prk
            .expand(&info, &aead::AES_256_GCM)
            .expect("HKDF-SHA256 can always produce one 32-byte block")
            .into();
        let mut throttle_hash = [0u8; 16];
        prk.expand(&[&b"throttle hash"[..]], SixteenBytes)
            .and_then(|okm| okm.fill(&mut throttle_hash))
            .expect("HKDF-SHA256 can always produce 16 bytes");
        let (k0, k1) = throttle_hash.split_at(8);
        let half = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
        Self {
            throttle_hash: (half(k0), half(k1)),
            token_lookup: hmac_key(b"token lookup"),
            client_secret: hmac_key(b"client secret"),
            listing_cursor: hmac_key(b"listing cursor"),
            sealing: aead::LessSafeKey::new(sealing_key),
        }
    }

    /// The lookup digest of a token value: what the `tokens.value_digest` column holds.
    pub fn token_digest(&self, token_value: &str) -> Digest {
        hmac::sign(&self.token_lookup, token_value.as_bytes())
            .as_ref()
            .to_vec()
    }

    /// The stored form of a client secret (a site's auth key, a resource server's or admin's secret).
    pub fn client_secret_digest(&self, secret: &str) -> Digest {
        hmac::sign(&self.client_secret, secret.as_bytes())
            .as_ref()
            .to_vec()
    }

    /// The keys of the throttle's client-id hash.
    pub fn throttle_hash_keys(&self) -> (u64, u64) {
        self.throttle_hash
    }

    /// Checks a presented client secret against its stored digest in constant time.
    pub fn verify_client_secret(&self, presented: &str, stored_digest: &[u8]) -> bool {
        hmac::verify(&self.client_secret, presented.as_bytes(), stored_digest).is_ok()
    }

    /// The tag that makes a listing's page cursor (`next`) unforgeable: a cursor is accepted back
    /// only with the tag this server gave it, so a changed one is refused rather than listing
    /// from wherever it points.
    pub fn cursor_tag(&self, cursor: &[u8]) -> Digest {
        hmac::sign(&self.listing_cursor, cursor).as_ref().to_vec()
    }

    /// Checks a cursor's tag in constant time.
    pub fn verify_cursor_tag(&self, cursor: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.listing_cursor, cursor, tag).is_ok()
    }

    /// Seals `plaintext` under a fresh random nonce; `context` binds the sealed bytes to the row
    /// they belong to, so a sealed value copied into another row does not open.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, RandomnessUnavailable> {
        let nonce_bytes: [u8; SEAL_NONCE_LEN] = random_bytes()?;
        let mut in_out = plaintext.to_vec();
        self.sealing
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce_bytes),
                aead::Aad::from(context),
                &mut in_out,
            )
            .map_err(|_| RandomnessUnavailable)?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, UnsealFailed> {
        if sealed.len() < SEAL_NONCE_LEN {
            return Err(UnsealFailed);
        }
        let (nonce_bytes, ciphertext) = sealed.split_at(SEAL_NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| UnsealFailed)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .sealing
            .open_in_place(nonce, aead::Aad::from(context), &mut in_out)
            .map_err(|_| UnsealFailed)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: u8) -> Keys {
        Keys::derive(&ServerSecret::from_bytes([byte; SECRET_LEN]))
    }

    #[test]
    fn digests_depend_on_the_server_secret_and_the_purpose() {
        let (a, b) = (keys(1), keys(2));
        assert_ne!(a.token_digest("twp_x"), b.token_digest("twp_x"));
        assert_ne!(a.token_digest("twp_x"), a.client_secret_digest("twp_x"));
        assert_eq!(a.token_digest("twp_x"), a.token_digest("twp_x"));
    }

    #[test]
    fn client_secrets_verify_only_with_the_right_value_and_key() {
        let stored = keys(1).client_secret_digest("correct");
        assert!(keys(1).verify_client_secret("correct", &stored));
        assert!(!keys(1).verify_client_secret("wrong", &stored));
        assert!(!keys(2).verify_client_secret("correct", &stored));
    }

    #[test]
    fn cursor_tags_verify_only_for_the_same_cursor_and_key() {
        let tag = keys(1).cursor_tag(b"page 2");
        assert!(keys(1).verify_cursor_tag(b"page 2", &tag));
        assert!(!keys(1).verify_cursor_tag(b"page 3", &tag));
        assert!(!keys(2).verify_cursor_tag(b"page 2", &tag));
        assert_ne!(tag, keys(1).token_digest("page 2"));
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let sealed = keys(1).seal(b"twp_value", b"token:7").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"twp_value"));
        assert_eq!(keys(1).open(&sealed, b"token:7").unwrap(), b"twp_value");
        assert!(keys(1).open(&sealed, b"token:8").is_err());
        assert!(keys(2).open(&sealed, b"token:7").is_err());
        assert!(keys(1).open(&sealed[..5], b"token:7").is_err());
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let secret = ServerSecret::from_bytes([0xAB; SECRET_LEN]);
        assert_eq!(format!("{secret:?}"), "ServerSecret(<redacted>)");
        assert_eq!(format!("{:?}", Keys::derive(&secret)), "Keys(<redacted>)");
    }
}
