//! The control plane's own email: registration verification (see
//! `crate::verification`), through the SMTP relay of `[smtp]` in
//! control.toml.
//!
//! ```toml
//! [smtp]
//! host = "smtp.example.com"
//! port = 587                      # default: 587 starttls, 465 implicit, 25 none
//! tls = "starttls"                # "implicit", or "none" (loopback hosts only)
//! username = "delta"              # with password_file, or neither
//! password_file = "/etc/delta/smtp-password"
//! from = "Delta <noreply@example.com>"
//! ```
//!
//! Agents' messages go through the node's messaging capability
//! (`delta-messaging`); both reach their relay through `delta-mail`, which
//! links no part of the sandbox (the control plane must never link
//! Wasmtime: `cargo xtask tidy` checks it).

use std::path::PathBuf;
use std::time::Duration;

use delta_mail::Transport;
use lettre::AsyncTransport;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use serde::Deserialize;

/// Transport security of the relay.
pub use delta_mail::SmtpTls;

/// `[smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Port (default by `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Transport security (default `starttls`).
    #[serde(default)]
    pub tls: SmtpTls,
    /// AUTH user name (with `password_file`).
    #[serde(default)]
    pub username: Option<String>,
    /// File with the AUTH password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `Delta <noreply@example.com>`.
    pub from: String,
}

/// Why the relay settings are unusable.
#[derive(Debug, thiserror::Error)]
#[error("[smtp]: {0}")]
pub struct MailerError(String);

/// A built transport and sender.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// Build from `config` (reads the password file).
    pub fn new(config: &SmtpConfig) -> Result<Self, MailerError> {
        let bad = |m: String| MailerError(m);
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| bad(format!("from {:?}: {e}", config.from)))?;
        let credentials = match (&config.username, &config.password_file) {
            (Some(user), Some(file)) => Some((
                user.clone(),
                delta_http::config::read_secret(file).map_err(|e| bad(e.to_string()))?,
            )),
            (None, None) => None,
            _ => return Err(bad("username and password_file go together".into())),
        };
        let transport = delta_mail::transport(&delta_mail::Relay {
            host: &config.host,
            port: config.port,
            tls: config.tls,
            timeout: Duration::from_secs(30),
            credentials,
        })
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self { transport, from })
    }

    /// Send a plain-text mail to `to`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailerError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailerError(format!("recipient {to:?}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailerError(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailerError(e.to_string()))
    }
}
