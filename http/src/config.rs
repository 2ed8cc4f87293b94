//! Configuration files and secret files, read the same way by both daemons
//! (and by the CLI's `delta.toml`).
//!
//! A file is TOML for one schema; each daemon's `ConfigError` wraps
//! [`FileError`] and adds its own range checks. Relative paths inside a
//! file are the caller's to resolve against [`base_dir`].

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration or secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Not valid TOML for this schema (unknown keys included).
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's account.
        message: String,
    },
    /// A secret file that is empty once trimmed.
    #[error("{} is empty", path.display())]
    EmptySecret {
        /// The file.
        path: PathBuf,
    },
}

/// Read `path` as TOML into `T`.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| FileError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The directory relative paths in the file at `path` are relative to.
pub fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Read a secret file: trimmed, and refused when empty.
pub fn read_secret(path: &Path) -> Result<String, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(FileError::EmptySecret {
            path: path.to_owned(),
        });
    }
    Ok(secret.to_owned())
}

/// A complaint when `path` may be read by its group or others (`what` names
/// it, `fix` is the mode to set), or `None` when it is private or absent.
pub fn loose_permissions(path: &Path, what: &str, fix: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} ({what}) may be read by group or others (mode {mode:o}); chmod {fix} it",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Schema {
        name: String,
    }

    #[test]
    fn files_are_read_parsed_and_refused_with_their_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("delta-http-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.toml");
        std::fs::write(&good, "name = \"x\"\n").expect("write");
        let parsed: Schema = load_toml(&good).expect("parses");
        assert_eq!(parsed.name, "x");
        let typo = dir.join("typo.toml");
        std::fs::write(&typo, "nmae = \"x\"\n").expect("write");
        let err = load_toml::<Schema>(&typo).expect_err("unknown key");
        assert!(matches!(err, FileError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("typo.toml"), "{err}");
        let missing = load_toml::<Schema>(&dir.join("absent.toml")).expect_err("absent");
        assert!(matches!(missing, FileError::Read { .. }));

        let secret = dir.join("secret");
        std::fs::write(&secret, "  s3cret \n").expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_secret(&secret).expect("read"), "s3cret");
        assert_eq!(loose_permissions(&secret, "a secret", "600"), None);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let complaint = loose_permissions(&secret, "a secret", "600").expect("open");
        assert!(complaint.contains("chmod 600"), "{complaint}");
        std::fs::write(&secret, " \n").expect("write");
        assert!(matches!(
            read_secret(&secret),
            Err(FileError::EmptySecret { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
