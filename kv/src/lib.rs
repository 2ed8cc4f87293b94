//! Durable per-agent key-value state (`delta:agent/kv`): the rules and the
//! store.
//!
//! One rule, one place: key validation, value and page bounds, the per-agent
//! quota of keys and bytes, and versioning live here, and every caller uses
//! them: the control plane (its database, both dialects, serving nodes and
//! the public API) and a node without a control plane (its own SQLite file).
//!
//! # Versions
//! Every write gives the entry the agent's next version number (a counter
//! per agent, kept with its usage row), so versions only grow and a deleted
//! and re-created key never gets an old version back: a compare-and-swap
//! that read the value before the delete cannot succeed after it.
//!
//! # Quota
//! An agent's usage (keys, and bytes of keys plus values) is one row updated
//! in the same transaction as the entry. That row is written first in every
//! mutating transaction, so writes of one agent are serialised (a row lock on
//! PostgreSQL, the database's write lock on SQLite) and the quota can never
//! be overshot by concurrent runs. A write that does not grow the usage is
//! accepted even over a quota that was lowered since.

#![forbid(unsafe_code)]

pub mod store;

use serde::{Deserialize, Serialize};

pub use store::KvStore;

/// Largest key, bytes (also the ceiling of [`KvLimits::max_key_bytes`]).
pub const MAX_KEY_BYTES: usize = 512;
/// Keys per listed page when the caller asks for 0.
pub const DEFAULT_PAGE: u32 = 100;
/// Most keys per listed page.
pub const MAX_PAGE: u32 = 1_000;

/// The bounds of one agent's state (`[kv]` in `control.toml`, or in
/// `node.toml` for a node without a control plane). Every field has a
/// default; a guest can fill at most `max_total_bytes` of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvLimits {
    /// Longest key, bytes (default and ceiling 512).
    pub max_key_bytes: usize,
    /// Largest value, bytes (default 64 KiB).
    pub max_value_bytes: u64,
    /// Most keys per agent (default 10,000).
    pub max_keys: u64,
    /// Most bytes per agent, keys plus values (default 16 MiB).
    pub max_total_bytes: u64,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: MAX_KEY_BYTES,
            max_value_bytes: 64 * 1024,
            max_keys: 10_000,
            max_total_bytes: 16 * 1024 * 1024,
        }
    }
}

impl KvLimits {
    /// A description of a bad setting, if any.
    pub fn problem(&self) -> Option<String> {
        if self.max_key_bytes == 0 || self.max_key_bytes > MAX_KEY_BYTES {
            return Some(format!("kv.max_key_bytes must be 1-{MAX_KEY_BYTES}"));
        }
        if self.max_value_bytes == 0 || self.max_keys == 0 || self.max_total_bytes == 0 {
            return Some(
                "kv.max_value_bytes, kv.max_keys and kv.max_total_bytes must be positive".into(),
            );
        }
        None
    }

    /// `Ok` when `key` is a valid key under these limits.
    pub fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::InvalidKey("a key must not be empty".into()));
        }
        self.check_prefix(key)
    }

    /// `Ok` when `prefix` (possibly empty) could start a valid key.
    pub fn check_prefix(&self, prefix: &str) -> Result<(), KvError> {
        if prefix.len() > self.max_key_bytes {
            return Err(KvError::InvalidKey(format!(
                "longer than {} bytes",
                self.max_key_bytes
            )));
        }
        if prefix.chars().any(char::is_control) {
            return Err(KvError::InvalidKey(
                "control characters are not allowed".into(),
            ));
        }
        Ok(())
    }

    /// `Ok` when a value of `len` bytes may be stored.
    pub fn check_value(&self, len: usize) -> Result<(), KvError> {
        if len as u64 > self.max_value_bytes {
            return Err(KvError::TooLarge {
                limit: self.max_value_bytes,
            });
        }
        Ok(())
    }
}

/// The page size a caller asking for `limit` gets.
pub fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// Why a kv operation was refused or failed. Mirrors the WIT's `kv-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// No store is configured.
    #[error("no kv store is configured")]
    NotConfigured,
    /// The agent has no `kv` grant.
    #[error("the agent has no kv grant")]
    NotAllowed,
    /// A malformed key, prefix or cursor.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The value is over the limit.
    #[error("the value is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The write would exceed the agent's quota.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// Compare-and-swap found another version.
    #[error("version conflict: the current version is {current}")]
    Conflict {
        /// The current version (0: no such key).
        current: u64,
    },
    /// The store could not answer.
    #[error("the kv store is unavailable: {0}")]
    Unavailable(String),
}

impl KvError {
    /// The WIT case name (a bounded label for metrics and usage).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not-configured",
            Self::NotAllowed => "not-allowed",
            Self::InvalidKey(_) => "invalid-key",
            Self::TooLarge { .. } => "too-large",
            Self::QuotaExceeded(_) => "quota-exceeded",
            Self::Conflict { .. } => "conflict",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// When it was written (ms since the epoch).
    pub updated_at_ms: i64,
}

/// A key as listed: no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// Its version.
    pub version: u64,
    /// Bytes of its value.
    pub size: u64,
    /// When it was written (ms since the epoch).
    pub updated_at_ms: i64,
}

/// One page of keys, in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The keys.
    pub items: Vec<KeyInfo>,
    /// The last key of this page when more may follow.
    pub next: Option<String>,
}

/// What an agent's state takes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Keys stored.
    pub keys: u64,
    /// Bytes of keys plus values.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_pages_are_bounded() {
        let limits = KvLimits::default();
        assert!(limits.check_key("runs/count").is_ok());
        assert!(limits.check_key(&"k".repeat(512)).is_ok());
        for bad in ["", "a\0b", "line\nbreak"] {
            assert!(
                matches!(limits.check_key(bad), Err(KvError::InvalidKey(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            limits.check_key(&"k".repeat(513)),
            Err(KvError::InvalidKey(_))
        ));
        assert!(limits.check_prefix("").is_ok());
        assert!(limits.check_value(64 * 1024).is_ok());
        assert_eq!(
            limits.check_value(64 * 1024 + 1),
            Err(KvError::TooLarge { limit: 64 * 1024 })
        );
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(5), 5);
        assert_eq!(page_size(u32::MAX), MAX_PAGE);
        assert!(limits.problem().is_none());
        let bad = KvLimits {
            max_key_bytes: 4096,
            ..limits
        };
        assert!(bad.problem().is_some());
    }
}
