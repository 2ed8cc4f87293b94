//! Why a script was not turned into a component.

use std::path::PathBuf;

/// A refused script (bad input: everything but [`JsError::Engine`] and
/// [`JsError::Cache`]) or a host failure.
#[derive(Debug, thiserror::Error)]
pub enum JsError {
    /// The script does not parse.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// QuickJS's message, e.g. `SyntaxError: unexpected token in expression: ')'`.
        message: String,
        /// 1-based line in the script.
        line: u64,
        /// 1-based column.
        column: u64,
    },
    /// The module failed to load: an unknown import (only `delta` exists),
    /// or its top level threw.
    #[error("the script failed to load: {0}")]
    Load(String),
    /// The module does not export the entry function (`run` or `verify`).
    #[error("{0}")]
    NoEntry(String),
    /// The source is over the size limit.
    #[error("the script is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Loading the module (compiling it and running its top level) went
    /// over the deploy-time fuel or memory bound, or crashed the engine.
    #[error("loading the script {0}")]
    LoadLimit(String),
    /// The engine component could not be instrumented, compiled or
    /// snapshotted (a host failure, not the script's).
    #[error("the JavaScript engine failed: {0}")]
    Engine(String),
    /// The prepared-script cache could not be written.
    #[error("prepared-script cache {path}: {source}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl JsError {
    /// Whether the script (not the host) is at fault.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, JsError::Engine(_) | JsError::Cache { .. })
    }

    /// A stable machine-readable code (`js-syntax-error`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            JsError::Syntax { .. } => "js-syntax-error",
            JsError::Load(_) => "js-load-error",
            JsError::NoEntry(_) => "js-no-entry",
            JsError::TooLarge { .. } => "js-too-large",
            JsError::LoadLimit(_) => "js-load-limit",
            JsError::Engine(_) => "js-engine",
            JsError::Cache { .. } => "js-cache",
        }
    }
}
