//! Durable key-value state of the agent (`delta:agent/kv`), kept between
//! runs and across node moves.
//!
//! Keys are 1-512 bytes of text without control characters; values are
//! bytes (64 KiB by default). Each agent has a quota of keys and bytes. The
//! agent needs the `kv` grant; without it every call fails with
//! [`KvError::NotAllowed`].
//!
//! Several runs of one agent may execute at once (on one node, or on two
//! while the agent moves): read-modify-write with [`update`] (or
//! [`get`] + [`compare_and_swap`] yourself) so that no run overwrites
//! another's change.
//!
//! ```no_run
//! use delta_sdk::kv;
//!
//! # fn main() -> Result<(), delta_sdk::AgentError> {
//! // Count this agent's runs, safely under concurrent runs.
//! let (_version, runs) = kv::update("runs", |old| {
//!     let n: u64 = old
//!         .and_then(|b| std::str::from_utf8(b).ok())
//!         .and_then(|s| s.parse().ok())
//!         .unwrap_or(0);
//!     (n + 1).to_string().into_bytes()
//! })?;
//! delta_sdk::info!("run number {}", String::from_utf8_lossy(&runs));
//!
//! kv::set("last-input", b"{\"name\": \"Ada\"}")?;
//! let page = kv::list_prefix("last-", None, 10)?;
//! assert!(page.keys.iter().all(|k| k.starts_with("last-")));
//! # Ok(())
//! # }
//! ```
//!
//! Outside WebAssembly (unit tests on the host) every call fails with
//! [`KvError::NotConfigured`].

use core::fmt;

use crate::AgentError;

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Its version (never 0); pass it to [`compare_and_swap`].
    pub version: u64,
}

/// One page of keys, in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// The keys.
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; none on the last page.
    pub next_cursor: Option<String>,
}

/// Why a kv operation failed.
///
/// Converts into [`AgentError`] with `?`: the code is `kv-` followed by
/// [`KvError::code`]; retryable for [`KvError::Unavailable`] and
/// [`KvError::Conflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// No kv store is configured on this node.
    NotConfigured,
    /// The agent has no `kv` grant.
    NotAllowed,
    /// The key, prefix or cursor is empty, too long or has control characters.
    InvalidKey(String),
    /// The value is over the node's limit.
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The write would exceed the agent's quota of keys or bytes.
    QuotaExceeded(String),
    /// [`compare_and_swap`] found another version.
    Conflict {
        /// The current version (0: the key does not exist).
        current: u64,
    },
    /// The store could not answer; retrying later may succeed.
    Unavailable(String),
}

impl KvError {
    /// The WIT variant name in kebab case (`"not-allowed"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            KvError::NotConfigured => "not-configured",
            KvError::NotAllowed => "not-allowed",
            KvError::InvalidKey(_) => "invalid-key",
            KvError::TooLarge { .. } => "too-large",
            KvError::QuotaExceeded(_) => "quota-exceeded",
            KvError::Conflict { .. } => "conflict",
            KvError::Unavailable(_) => "unavailable",
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::NotConfigured => f.write_str("no kv store is configured on this node"),
            KvError::NotAllowed => f.write_str("this agent has no kv grant"),
            KvError::InvalidKey(why) => write!(f, "invalid key: {why}"),
            KvError::TooLarge { limit } => write!(f, "the value is over {limit} bytes"),
            KvError::QuotaExceeded(why) => write!(f, "kv quota exceeded: {why}"),
            KvError::Conflict { current } => {
                write!(f, "version conflict: the current version is {current}")
            }
            KvError::Unavailable(why) => write!(f, "the kv store is unavailable: {why}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<KvError> for AgentError {
    fn from(error: KvError) -> Self {
        AgentError {
            code: format!("kv-{}", error.code()),
            retryable: matches!(error, KvError::Unavailable(_) | KvError::Conflict { .. }),
            message: error.to_string(),
        }
    }
}

/// The entry under `key`, if any.
pub fn get(key: &str) -> Result<Option<Entry>, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::get(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        Err(KvError::NotConfigured)
    }
}

/// Store `value` under `key` (creating or replacing it); the new version.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<u64, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::set(key, value.as_ref())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (key, value);
        Err(KvError::NotConfigured)
    }
}

/// Remove `key`; whether it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::delete(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        Err(KvError::NotConfigured)
    }
}

/// Keys starting with `prefix` (`""`: all), after `cursor` (the previous
/// page's `next_cursor`), at most `limit` (1-1000; 0 takes 100).
pub fn list_prefix(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<KeyPage, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::list_prefix(prefix, cursor, limit)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (prefix, cursor, limit);
        Err(KvError::NotConfigured)
    }
}

/// Store `value` under `key` only if its version is `expected` (0: only if
/// it does not exist); the new version, or [`KvError::Conflict`].
pub fn compare_and_swap(key: &str, expected: u64, value: impl AsRef<[u8]>) -> Result<u64, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        wasm::compare_and_swap(key, expected, value.as_ref())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (key, expected, value);
        Err(KvError::NotConfigured)
    }
}

/// Most attempts of [`update`] before it gives up with the last conflict
/// (the run's deadline usually comes first).
pub const MAX_UPDATE_ATTEMPTS: u32 = 1_000;

/// Read `key`, compute its new value with `f` (given the current value,
/// none if absent) and swap it in, again until no other write came in
/// between. Answers the new version and value. `f` may run several times.
pub fn update(
    key: &str,
    mut f: impl FnMut(Option<&[u8]>) -> Vec<u8>,
) -> Result<(u64, Vec<u8>), KvError> {
    let mut last = KvError::Conflict { current: 0 };
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let current = get(key)?;
        let expected = current.as_ref().map_or(0, |e| e.version);
        let value = f(current.as_ref().map(|e| e.value.as_slice()));
        match compare_and_swap(key, expected, &value) {
            Ok(version) => return Ok((version, value)),
            Err(e @ KvError::Conflict { .. }) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::*;
    use crate::bindings::agent::delta::agent::kv as raw;

    pub(super) fn get(key: &str) -> Result<Option<Entry>, KvError> {
        raw::get(key)
            .map(|e| {
                e.map(|e| Entry {
                    key: e.key,
                    value: e.value,
                    version: e.version,
                })
            })
            .map_err(error)
    }

    pub(super) fn set(key: &str, value: &[u8]) -> Result<u64, KvError> {
        raw::set(key, value).map_err(error)
    }

    pub(super) fn delete(key: &str) -> Result<bool, KvError> {
        raw::delete(key).map_err(error)
    }

    pub(super) fn list_prefix(
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, KvError> {
        raw::list_prefix(prefix, cursor, limit)
            .map(|p| KeyPage {
                keys: p.keys,
                next_cursor: p.next_cursor,
            })
            .map_err(error)
    }

    pub(super) fn compare_and_swap(key: &str, expected: u64, value: &[u8]) -> Result<u64, KvError> {
        raw::compare_and_swap(key, expected, value).map_err(error)
    }

    fn error(e: raw::KvError) -> KvError {
        match e {
            raw::KvError::NotConfigured => KvError::NotConfigured,
            raw::KvError::NotAllowed => KvError::NotAllowed,
            raw::KvError::InvalidKey(why) => KvError::InvalidKey(why),
            raw::KvError::TooLarge(limit) => KvError::TooLarge { limit },
            raw::KvError::QuotaExceeded(why) => KvError::QuotaExceeded(why),
            raw::KvError::Conflict(current) => KvError::Conflict { current },
            raw::KvError::Unavailable(why) => KvError::Unavailable(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_wasm_kv_is_not_configured_and_errors_convert() {
        assert_eq!(get("k"), Err(KvError::NotConfigured));
        assert_eq!(update("k", |_| b"1".to_vec()), Err(KvError::NotConfigured));
        let e: AgentError = KvError::Conflict { current: 3 }.into();
        assert_eq!(e.code, "kv-conflict");
        assert!(e.retryable);
        let e: AgentError = KvError::NotAllowed.into();
        assert_eq!(e.code, "kv-not-allowed");
        assert!(!e.retryable);
    }
}
