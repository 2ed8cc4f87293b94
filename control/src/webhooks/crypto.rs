//! Endpoint secrets and Standard Webhooks signatures.
//!
//! A secret is `whsec_` and the base64 of 32 random bytes; the HMAC key is
//! those bytes (as Standard Webhooks' libraries read it). At rest it is
//! sealed with AES-256-GCM under a key derived from the access-token secret
//! (every replica derives the same one), with the endpoint's id as
//! associated data, so a sealed secret copied onto another endpoint's row
//! does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use delta_http::ApiError;
use rand::RngCore as _;

use crate::auth::{JwtKeys, hmac_sha256};

const SEAL_PURPOSE: &str = "delta-control webhook secrets v1";
/// The prefix of a secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` + base64 of 32 random bytes.
pub(super) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The HMAC key a secret stands for; `None` if it is not one of ours.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()
}

/// `secret` sealed for endpoint `endpoint_id`.
pub(super) fn seal(keys: &JwtKeys, endpoint_id: &str, secret: &str) -> Result<String, ApiError> {
    let sealer = RandomizedNonceKey::new(&AES_256_GCM, &keys.derive_key(SEAL_PURPOSE))
        .map_err(|_| ApiError::internal("building the webhook-secret key"))?;
    let mut data = secret.as_bytes().to_vec();
    let nonce = sealer
        .seal_in_place_append_tag(Aad::from(endpoint_id.as_bytes()), &mut data)
        .map_err(|_| ApiError::internal("sealing a webhook secret"))?;
    let mut out = nonce.as_ref().to_vec();
    out.extend_from_slice(&data);
    Ok(STANDARD.encode(out))
}

/// The secret sealed for `endpoint_id`; `None` if it does not open (another
/// endpoint's, or sealed under another access-token secret).
pub(super) fn open(keys: &JwtKeys, endpoint_id: &str, sealed: &str) -> Option<String> {
    let opener = RandomizedNonceKey::new(&AES_256_GCM, &keys.derive_key(SEAL_PURPOSE)).ok()?;
    let raw = STANDARD.decode(sealed).ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = rest.to_vec();
    let plain = opener
        .open_in_place(nonce, Aad::from(endpoint_id.as_bytes()), &mut data)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// The Standard Webhooks signature of one attempt: base64 of
/// HMAC-SHA256(key, `"<id>.<timestamp>.<body>"`); `None` for a secret that
/// is not `whsec_<base64>`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = key_of(secret)?;
    let mut content = format!("{msg_id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    Some(STANDARD.encode(hmac_sha256(&key, &content)))
}

/// The `webhook-signature` header's value: `v1,<signature>`.
pub fn signature_header(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    sign(secret, msg_id, timestamp, body).map(|s| format!("v1,{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_as_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature_header(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert!(sign("not-a-secret", "m", 1, b"").is_none());
    }

    #[test]
    fn sealed_secrets_open_only_for_their_endpoint() {
        let keys = JwtKeys::new(&[7u8; 32]);
        let secret = new_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        let sealed = seal(&keys, "whep_a", &secret).expect("seal");
        assert!(!sealed.contains(&secret[SECRET_PREFIX.len()..]));
        assert_eq!(
            open(&keys, "whep_a", &sealed).as_deref(),
            Some(secret.as_str())
        );
        assert_eq!(open(&keys, "whep_b", &sealed), None);
        assert_eq!(open(&JwtKeys::new(&[8u8; 32]), "whep_a", &sealed), None);
    }
}
