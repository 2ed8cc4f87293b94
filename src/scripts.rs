//! The control plane's script preparer, backed by `delta-js` (QuickJS
//! snapshotted by Wizer). Installed by `delta control` and `delta up`; the
//! control plane crate only knows the [`ScriptPreparer`] trait, so that it
//! does not link Wasmtime. The control plane's tests include this file
//! (`#[path]`) to run the same adapter.

use delta_control::scripts::{Prepared, ScriptError, ScriptPreparer};
use delta_js::{JsError, Kind, Preparer};

/// [`ScriptPreparer`] over a [`delta_js::Preparer`].
pub struct JsScripts(Preparer);

impl JsScripts {
    /// A preparer with the default deploy-time limits.
    pub fn new() -> Result<Self, JsError> {
        Preparer::new(Default::default()).map(Self)
    }
}

impl ScriptPreparer for JsScripts {
    fn prepare<'a>(&'a self, source: &'a str) -> Prepared<'a> {
        Box::pin(async move {
            let prepared = match self.0.prepare(source, Kind::Agent).await {
                Err(JsError::NoEntry(_)) => match self.0.prepare(source, Kind::Verifier).await {
                    Err(JsError::NoEntry(_)) => Err(JsError::NoEntry(
                        "the script exports neither `run` (an agent) nor `verify` (a verifier)"
                            .into(),
                    )),
                    other => other,
                },
                other => other,
            };
            prepared.map_err(|e| match e {
                JsError::TooLarge { .. } => ScriptError::TooLarge(e.to_string()),
                e if e.is_bad_input() => ScriptError::Invalid {
                    code: e.code(),
                    position: match &e {
                        JsError::Syntax { line, column, .. } => Some((*line, *column)),
                        _ => None,
                    },
                    message: e.to_string(),
                },
                e => ScriptError::Internal(e.to_string()),
            })
        })
    }
}
