//! `control.toml`: the control plane's configuration.
//!
//! ```toml
//! listen = "127.0.0.1:7420"
//! state_dir = "/var/lib/delta-control"
//! database_url = "postgres://delta@localhost/delta"   # default: SQLite in state_dir
//! node_token_file = "/etc/delta/node-token"           # nodes present it; the control plane uses it to call them
//! allow_registration = true
//! node_heartbeat_timeout_secs = 15
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Not valid TOML for this schema.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's account.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Where the SQLite database, the JWT secret and components live.
    pub state_dir: PathBuf,
    /// `sqlite://...` or `postgres://...` (default: `<state_dir>/control.db`).
    pub database_url: Option<String>,
    /// File with the HMAC secret for access tokens (default: generated once
    /// into `<state_dir>/jwt-secret`, mode 0600).
    pub jwt_secret_file: Option<PathBuf>,
    /// File with the fleet's node token: nodes present it to register,
    /// heartbeat and report usage; the control plane presents it to nodes.
    pub node_token_file: Option<PathBuf>,
    /// Whether anyone may register (default true).
    pub allow_registration: bool,
    /// A node without a heartbeat for this long is marked down.
    pub node_heartbeat_timeout_secs: u64,
    /// Largest JSON body, bytes.
    pub max_body_bytes: u64,
    /// Largest component upload, bytes.
    pub max_component_bytes: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7420)),
            state_dir: PathBuf::from(".delta/control"),
            database_url: None,
            jwt_secret_file: None,
            node_token_file: None,
            allow_registration: true,
            node_heartbeat_timeout_secs: 15,
            max_body_bytes: 1 << 20,
            max_component_bytes: 64 << 20,
        }
    }
}

impl ControlConfig {
    /// Read `path`; relative paths are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            Some(&mut config.state_dir),
            config.jwt_secret_file.as_mut(),
            config.node_token_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// The database URL, defaulting to SQLite in the state directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.state_dir.join("control.db").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml").expect("example") + "//! ```toml".len();
        let end = start + doc[start..].find("//! ```").expect("end");
        let toml: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let config: ControlConfig = toml::from_str(&toml).expect("example parses");
        assert!(config.database_url().starts_with("postgres://"));
        assert!(config.allow_registration);
    }
}
