//! `delta login` / `delta logout`: a profile (API URL, API key, tenant) kept
//! in `$XDG_CONFIG_HOME/delta/profile.json` (default `~/.config/delta/`),
//! mode 0600 in a 0700 directory, so that later commands need no flags.
//!
//! Where each setting comes from, first found wins: the command line, the
//! environment (`DELTA_API_URL`, `DELTA_API_KEY`, `DELTA_APP_ID`), the
//! profile, then `delta up`'s defaults (loopback, `./.delta/admin-api-key`).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// What a profile holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Profile {
    /// Control plane URL.
    pub api_url: String,
    /// API key (`dk_...`).
    pub api_key: String,
    /// The tenant to act in (`X-App-ID`), if not the key's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

/// The profile file's path.
pub fn path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .context("neither XDG_CONFIG_HOME nor HOME is set: no place for a profile")?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("delta").join("profile.json"))
}

/// The saved profile, if there is one. A profile others can read is
/// refused: it holds a key.
pub fn load() -> anyhow::Result<Option<Profile>> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mode = std::fs::metadata(&path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}): it holds an API key; chmod 600 it or run \
             `delta login` again",
            path.display(),
            mode & 0o777
        );
    }
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "{} is not a profile (run `delta login` again)",
            path.display()
        )
    })
}

/// Write the profile (0600, its directory 0700).
pub fn save(profile: &Profile) -> anyhow::Result<PathBuf> {
    let path = path()?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // A fresh file (never a pre-existing one's permissions).
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(serde_json::to_string_pretty(profile)?.as_bytes())?;
    Ok(path)
}

/// Remove the profile (nothing to do when there is none).
pub fn remove() -> anyhow::Result<Option<PathBuf>> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
