//! Script uploads: what the control plane needs from a JavaScript preparer,
//! as a trait the binary fills in.
//!
//! Preparing a script runs it (Wizer snapshots its top level in Wasmtime),
//! so the preparer lives outside this crate: `delta control` and `delta up`
//! install one backed by `delta-js`, and the control plane itself never
//! links Wasmtime (ARCHITECTURE.md, "dependency rules"). Without one,
//! script uploads answer 501 `not_configured`.

use std::future::Future;
use std::pin::Pin;

/// Why a script could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The source is over the preparer's size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The script's own fault: it does not parse, load or export an entry
    /// (422 `invalid_script`).
    #[error("{message}")]
    Invalid {
        /// A stable code (`syntax`, `load`, `no_entry`, `load_limit`, ...).
        code: &'static str,
        /// What is wrong, for the author.
        message: String,
        /// Where a syntax error is (1-based), when known.
        position: Option<(u64, u64)>,
    },
    /// The host failed (500).
    #[error("{0}")]
    Internal(String),
}

/// A boxed future (the trait is used as an object).
pub type Prepared<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, ScriptError>> + Send + 'a>>;

/// Turns a JavaScript module into a component: an agent when it exports
/// `run`, else a verifier exporting `verify`. The same source must give the
/// same bytes (uploads are addressed by their digest).
pub trait ScriptPreparer: Send + Sync + 'static {
    /// Prepare `source`.
    fn prepare<'a>(&'a self, source: &'a str) -> Prepared<'a>;
}
