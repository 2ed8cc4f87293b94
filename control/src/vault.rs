//! Tenants' secrets vault (seed 002): values agents' HTTP calls use in
//! header values (`{{secret:NAME}}`) without the guest ever seeing them.
//!
//! # Sealing
//! Each value is sealed with AES-256-GCM (`aes-gcm`) under the vault key, a
//! fresh random 96-bit nonce per value, and the tenant id and the secret's
//! name as associated data: a sealed row copied to another tenant or name
//! does not open. The key is 32 bytes read from `vault_key_file` (mode
//! 0600, refused otherwise, like the access-token secret); it is never in
//! the database, so a copy of the database (a backup, a replica, an SQL
//! injection elsewhere) yields no secret. Whoever holds both the key file
//! and the database holds every tenant's secrets: keep the key on the
//! control plane's machines only. Without the file the routes answer 501
//! `not_configured`.
//!
//! # Who sees what
//! Tenant admins write (`PUT`), list (names and times, never values) and
//! delete secrets. Nobody reads a value back over the public API. A node
//! resolves the values an agent's HTTP grant names, for that agent's
//! tenant, only for an agent placed on it ([`crate::outbound`]).

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context;
use rand::RngCore as _;

/// Bytes of a nonce (96 bits, as GCM wants).
pub const NONCE_LEN: usize = 12;
/// Largest secret value, bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// Most secrets per tenant.
pub const MAX_SECRETS_PER_TENANT: i64 = 500;

/// The vault key, ready to seal and open.
pub struct Vault {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

/// A sealed value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

fn aad(tenant_id: &str, name: &str) -> Vec<u8> {
    // Both parts are length-delimited by the NUL, which neither may hold
    // (tenant ids are generated; names are [A-Za-z0-9_-]).
    let mut aad = b"delta vault v1\0".to_vec();
    aad.extend_from_slice(tenant_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

impl Vault {
    /// A vault with `key` (32 bytes).
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// The vault whose key is in `path`: 32 raw bytes (`head -c 32
    /// /dev/urandom`), or their hex or base64 on one line. A file group or
    /// others may read is refused.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        if let Some(problem) = delta_http::config::loose_permissions(path, "the vault key", "600") {
            anyhow::bail!("{problem}");
        }
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let key = parse_key(&raw).with_context(|| {
            format!(
                "{} must hold 32 bytes (raw, or as hex or base64), e.g. `head -c 32 /dev/urandom`",
                path.display()
            )
        })?;
        Ok(Self::new(&key))
    }

    /// `value` sealed for `name` of `tenant_id`.
    pub fn seal(&self, tenant_id: &str, name: &str, value: &[u8]) -> anyhow::Result<Sealed> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &aad(tenant_id, name),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing a secret"))?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// The value sealed for `name` of `tenant_id`; `None` if it does not
    /// open (another tenant's or name's row, another key, tampering).
    pub fn open(&self, tenant_id: &str, name: &str, sealed: &Sealed) -> Option<Vec<u8>> {
        if sealed.nonce.len() != NONCE_LEN {
            return None;
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad(tenant_id, name),
                },
            )
            .ok()
    }
}

/// A fresh random key as hex on one line, as a key file may hold it (what
/// `delta up` writes for its development stack).
pub fn generate_key_hex() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

fn parse_key(raw: &[u8]) -> Option<[u8; 32]> {
    use base64::Engine as _;
    if let Ok(key) = <[u8; 32]>::try_from(raw) {
        return Some(key);
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Whether `name` is a valid secret name: 1-64 of `[A-Za-z0-9_-]` (what a
/// `{{secret:NAME}}` placeholder can name).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_tenant_and_name_and_nonces_differ() {
        let vault = Vault::new(&[7; 32]);
        let a = vault.seal("t1", "API_KEY", b"s3cr3t").expect("seal");
        let b = vault.seal("t1", "API_KEY", b"s3cr3t").expect("seal");
        assert_ne!(a.nonce, b.nonce, "a fresh nonce per value");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(
            vault.open("t1", "API_KEY", &a).as_deref(),
            Some(&b"s3cr3t"[..])
        );
        assert_eq!(vault.open("t2", "API_KEY", &a), None, "another tenant");
        assert_eq!(vault.open("t1", "OTHER", &a), None, "another name");
        assert_eq!(
            Vault::new(&[8; 32]).open("t1", "API_KEY", &a),
            None,
            "another key"
        );
        let mut tampered = a.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(vault.open("t1", "API_KEY", &tampered), None);
    }

    #[test]
    fn keys_are_32_bytes_raw_hex_or_base64_and_names_are_plain() {
        assert_eq!(parse_key(&[1; 32]), Some([1; 32]));
        assert_eq!(
            parse_key(format!("{}\n", "ab".repeat(32)).as_bytes()),
            Some([0xab; 32])
        );
        assert_eq!(
            parse_key(b"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"),
            Some([1; 32])
        );
        assert_eq!(parse_key(b"short"), None);
        assert_eq!(parse_key(&[1; 31]), None);
        assert!(valid_name("OPENAI_API-KEY2"));
        for bad in ["", "a b", "a}}b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
