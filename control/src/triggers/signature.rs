//! Inbound webhook secrets and signatures.
//!
//! A sender signs each delivery with the webhook's secret:
//! `X-Delta-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! The control plane needs the secret itself to check that, so it cannot
//! keep only a hash: the secret is sealed with AES-256-GCM under a key
//! derived from the access-token secret (as stored idempotent answers are),
//! bound to the webhook's id so a sealed secret cannot be moved to another
//! webhook's row.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use delta_http::ApiError;

use crate::auth::JwtKeys;

// The signature rules themselves (pure, fuzzed: `fuzz/`).
pub use delta_triggers::signature::{
    REPLAY_WINDOW_SECS, SIGNATURE_HEADER, SignatureError, Verified, sign, verify,
};

const SEAL_PURPOSE: &str = "webhook-secret-seal-v1";
/// The prefix of secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: 32 random bytes, hex.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", hex::encode(bytes))
}

fn sealing_key(keys: &JwtKeys) -> Result<RandomizedNonceKey, ApiError> {
    RandomizedNonceKey::new(&AES_256_GCM, &keys.derive_key(SEAL_PURPOSE))
        .map_err(|_| ApiError::internal("building the webhook-secret sealing key"))
}

/// Seal `secret` for webhook `id`: base64 of nonce ‖ ciphertext ‖ tag.
pub fn seal(keys: &JwtKeys, id: &str, secret: &str) -> Result<String, ApiError> {
    let mut data = secret.as_bytes().to_vec();
    let nonce = sealing_key(keys)?
        .seal_in_place_append_tag(Aad::from(id.as_bytes()), &mut data)
        .map_err(|_| ApiError::internal("sealing a webhook secret"))?;
    let mut out = nonce.as_ref().to_vec();
    out.extend_from_slice(&data);
    Ok(STANDARD.encode(out))
}

/// Open what [`seal`] made for webhook `id`; none if it does not open
/// (another key: the access-token secret was replaced without keeping the
/// old one).
pub fn open(keys: &JwtKeys, id: &str, sealed: &str) -> Option<String> {
    let raw = STANDARD.decode(sealed).ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, data) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = sealing_key(keys)
        .ok()?
        .open_in_place(nonce, Aad::from(id.as_bytes()), &mut data)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_webhook() {
        let keys = JwtKeys::new(&[7u8; 32]);
        let sealed = seal(&keys, "whk_a", "whsec_x").expect("sealed");
        assert_eq!(open(&keys, "whk_a", &sealed).as_deref(), Some("whsec_x"));
        assert_eq!(open(&keys, "whk_b", &sealed), None);
        let other = JwtKeys::new(&[8u8; 32]);
        assert_eq!(open(&other, "whk_a", &sealed), None);
    }
}
