//! `delta run agent.js` and `delta inspect agent.js`: a JavaScript file is
//! prepared into a pre-initialised QuickJS component (`delta-js`), cached
//! under `<cache dir>/js/` by content hash, then loaded like any component.

use std::path::Path;
use std::sync::Arc;

use delta_js::{JsError, Kind, PrepareLimits, Preparer};
use delta_runtime::{LoadedComponent, Runtime};

use crate::exit;

/// Whether `path` names a JavaScript module (`.js` or `.mjs`).
pub(crate) fn is_script(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("js") || e.eq_ignore_ascii_case("mjs"))
}

/// Prepare and load a script: an agent when it exports `run`, else a
/// verifier when it exports `verify`. A refused script prints its error
/// (with line and column for a syntax error) and yields exit code 2.
pub(crate) async fn load(
    runtime: &Runtime,
    path: &Path,
) -> anyhow::Result<Result<Arc<LoadedComponent>, u8>> {
    let limits = PrepareLimits::default();
    let size = match tokio::fs::metadata(path).await {
        Ok(meta) => meta.len(),
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return Ok(Err(exit::BAD_INPUT));
        }
    };
    if size > limits.max_source_bytes as u64 {
        let e = JsError::TooLarge {
            size,
            limit: limits.max_source_bytes as u64,
        };
        eprintln!("error: {}: {e}", path.display());
        return Ok(Err(exit::BAD_INPUT));
    }
    let source = match tokio::fs::read(path).await.map(String::from_utf8) {
        Ok(Ok(source)) => source,
        Ok(Err(_)) => {
            eprintln!("error: {}: the script is not UTF-8", path.display());
            return Ok(Err(exit::BAD_INPUT));
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return Ok(Err(exit::BAD_INPUT));
        }
    };
    let preparer = Preparer::new(limits)?;
    let cache = runtime.config().cache_dir.as_ref().map(|d| d.join("js"));
    let prepare = |kind| {
        let preparer = &preparer;
        let cache = cache.clone();
        let source = &source;
        async move {
            match &cache {
                Some(dir) => preparer.prepare_cached(dir, source, kind).await,
                None => preparer.prepare(source, kind).await,
            }
        }
    };
    let prepared = match prepare(Kind::Agent).await {
        Err(JsError::NoEntry(_)) => match prepare(Kind::Verifier).await {
            Err(JsError::NoEntry(_)) => Err(JsError::NoEntry(
                "the script exports neither `run` (an agent) nor `verify` (a verifier)".into(),
            )),
            other => other,
        },
        other => other,
    };
    let bytes = match prepared {
        Ok(bytes) => bytes,
        Err(e) if e.is_bad_input() => {
            eprintln!("error: {}: {e}", path.display());
            return Ok(Err(exit::BAD_INPUT));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("preparing {}", path.display())));
        }
    };
    match runtime.load(bytes).await {
        Ok(component) => Ok(Ok(component)),
        Err(e) if e.is_bad_input() => {
            eprintln!("error: {}: {e}", path.display());
            Ok(Err(exit::BAD_INPUT))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("loading {}", path.display()))),
    }
}
