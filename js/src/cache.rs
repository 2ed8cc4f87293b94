//! Prepared components on disk, named by [`crate::cache_key`]. Written to a
//! temporary file and renamed into place, so readers never see half a file.

use std::path::Path;

use crate::JsError;

pub(crate) async fn get(dir: &Path, key: &str) -> Option<Vec<u8>> {
    tokio::fs::read(dir.join(format!("{key}.wasm"))).await.ok()
}

pub(crate) async fn put(dir: &Path, key: &str, bytes: &[u8]) -> Result<(), JsError> {
    let dir = dir.to_owned();
    let path = dir.join(format!("{key}.wasm"));
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| JsError::Cache { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let staged = tempfile::Builder::new()
            .prefix(".staging-")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        std::fs::write(staged.path(), &bytes).map_err(io(staged.path()))?;
        staged.persist(&path).map_err(|e| JsError::Cache {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    })
    .await
    .map_err(|e| JsError::Engine(e.to_string()))?
}
