//! Inbound webhook signatures: `X-Delta-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<body>")>`, checked within a replay window.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-delta-signature";
/// Deliveries signed further than this from the control plane's clock are
/// refused; a signature is remembered this long so it is not accepted twice.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// HMAC-SHA256 of `"<t>.<body>"` under `secret`, hex (what a sender puts
/// in `v1=`).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Why a delivery's signature is refused (401; the reason goes to the log
/// and the `code`, never which part of a good-looking signature differed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header, or not `t=...,v1=...`.
    #[error("missing or malformed X-Delta-Signature (t=<unix secs>,v1=<hex hmac>)")]
    Malformed,
    /// `t` outside the replay window.
    #[error("signature timestamp outside the {REPLAY_WINDOW_SECS} s window")]
    Stale,
    /// No `v1` matches.
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// The error's `code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "signature_malformed",
            Self::Stale => "signature_expired",
            Self::Mismatch => "signature_invalid",
        }
    }
}

/// A checked signature: its timestamp and the `v1` that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Unix seconds the sender signed at.
    pub t: i64,
    /// The matching signature, hex lower case.
    pub v1: String,
}

/// Check `header` against `secret` and `body` at `now_secs`. Several `v1=`
/// entries are allowed (a sender rolling its secret may sign twice); each
/// is compared in constant time.
pub fn verify(
    header: Option<&str>,
    secret: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                if t.is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                t = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "v1" => {
                if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SignatureError::Malformed);
                }
                candidates.push(value.to_ascii_lowercase());
            }
            // Other schemes (a future v2) are ignored, not refused.
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // abs_diff: no overflow whatever `t` a sender writes.
    if now_secs.abs_diff(t) > REPLAY_WINDOW_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = sign(secret, t, body);
    candidates
        .into_iter()
        .find(|c| bool::from(c.as_bytes().ct_eq(expected.as_bytes())))
        .map(|v1| Verified { t, v1 })
        .ok_or(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_only_with_its_secret_body_and_time() {
        let body = br#"{"a":1}"#;
        let now = 1_800_000_000;
        let v1 = sign("whsec_k", now, body);
        let header = format!("t={now},v1={v1}");
        let ok = verify(Some(&header), "whsec_k", body, now + 10).expect("valid");
        assert_eq!(
            ok,
            Verified {
                t: now,
                v1: v1.clone()
            }
        );
        assert_eq!(
            verify(Some(&header), "whsec_other", body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), "whsec_k", b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), "whsec_k", body, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&header), "whsec_k", body, now - 301),
            Err(SignatureError::Stale)
        );
        let rolled = format!("t={now},v1={},v1={v1}", "0".repeat(64));
        assert!(verify(Some(&rolled), "whsec_k", body, now).is_ok());
        for bad in ["", "t=1", "v1=abc", "t=x,v1=00", "t=-1,v1=00", "nonsense"] {
            assert_eq!(
                verify(Some(bad), "whsec_k", body, now),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(verify(None, "k", body, now), Err(SignatureError::Malformed));
    }
}
