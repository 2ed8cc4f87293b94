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
//! (`delta-messaging`), whose relay settings have the same shape; the
//! transport is built here again rather than shared because that crate
//! links the host API (and with it Wasmtime), which the control plane must
//! never link (`cargo xtask tidy` checks it).

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncTransport, Tokio1Executor};
use serde::Deserialize;

/// Transport security of the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, required (no credentials or mail in clear).
    #[default]
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// None: only to a relay on this machine.
    None,
}

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
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Mailer {
    /// Build from `config` (reads the password file).
    pub fn new(config: &SmtpConfig) -> Result<Self, MailerError> {
        let bad = |m: String| MailerError(m);
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| bad(format!("from {:?}: {e}", config.from)))?;
        let tls = |wrap: bool| {
            TlsParameters::new(config.host.clone())
                .map(|p| {
                    if wrap {
                        Tls::Wrapper(p)
                    } else {
                        Tls::Required(p)
                    }
                })
                .map_err(|e| bad(format!("TLS setup: {e}")))
        };
        let (tls, port) = match config.tls {
            SmtpTls::Starttls => (tls(false)?, 587),
            SmtpTls::Implicit => (tls(true)?, 465),
            SmtpTls::None if is_loopback_host(&config.host) => (Tls::None, 25),
            SmtpTls::None => {
                return Err(bad(format!(
                    "tls = \"none\" is only allowed for a loopback host, not {:?}",
                    config.host
                )));
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port.unwrap_or(port))
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)));
        match (&config.username, &config.password_file) {
            (Some(user), Some(file)) => {
                let password =
                    delta_http::config::read_secret(file).map_err(|e| bad(e.to_string()))?;
                builder = builder
                    .credentials(Credentials::new(user.clone(), password))
                    .authentication(vec![Mechanism::Plain, Mechanism::Login]);
            }
            (None, None) => {}
            _ => return Err(bad("username and password_file go together".into())),
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
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
