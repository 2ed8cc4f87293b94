//! The SMTP relay connection, one rule set for every sender in Delta: the
//! control plane's own mail (`delta_control::mailer`: address
//! verification) and agents' templated email (`delta_messaging`). Each
//! keeps its own config shape (the control plane reads a password file,
//! messaging a secret source with a timeout); how a relay is reached —
//! default ports, TLS, which hosts may be spoken to in clear, AUTH
//! mechanisms — and how a failure is summarised live here once.
//!
//! This crate links lettre and nothing of the sandbox, so the control plane
//! can use it without linking Wasmtime (ARCHITECTURE.md, checked by
//! `cargo xtask tidy`).

use std::net::IpAddr;
use std::time::Duration;

use lettre::Tokio1Executor;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use serde::{Deserialize, Serialize};

/// The async SMTP transport every sender uses.
pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Transport security of a relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS; refuses to continue (and to
    /// send credentials) if the upgrade is not offered.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No encryption. Accepted only when the host is a loopback address or
    /// `localhost`, so credentials and messages never cross a network in
    /// clear.
    None,
}

impl SmtpTls {
    /// The port a relay listens on for this security when none is given.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

/// How to reach a relay, whatever config it was read from.
#[derive(Debug, Clone)]
pub struct Relay<'a> {
    /// Host name (also the name its TLS certificate must carry).
    pub host: &'a str,
    /// Port; `None` takes [`SmtpTls::default_port`].
    pub port: Option<u16>,
    /// Transport security.
    pub tls: SmtpTls,
    /// Timeout of each SMTP command.
    pub timeout: Duration,
    /// AUTH user name and password, if any.
    pub credentials: Option<(String, String)>,
}

/// Why a relay cannot be used as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// `tls = "none"` towards a host that is not this machine.
    #[error("tls = \"none\" is only allowed for a loopback host, not {0:?}")]
    ClearTextRemote(String),
    /// The TLS parameters could not be built (e.g. no root certificates).
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Whether `host` names this machine: `localhost` or a loopback address
/// (IPv6 in brackets or not).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Build the transport for `relay`. Nothing is sent or connected yet.
pub fn transport(relay: &Relay<'_>) -> Result<Transport, RelayError> {
    let params =
        || TlsParameters::new(relay.host.to_owned()).map_err(|e| RelayError::Tls(e.to_string()));
    let tls = match relay.tls {
        SmtpTls::Starttls => Tls::Required(params()?),
        SmtpTls::Implicit => Tls::Wrapper(params()?),
        // Plain SMTP would expose the password and the messages on the
        // wire; only a relay on this machine is acceptable.
        SmtpTls::None if is_loopback_host(relay.host) => Tls::None,
        SmtpTls::None => return Err(RelayError::ClearTextRemote(relay.host.to_owned())),
    };
    let mut builder = Transport::builder_dangerous(relay.host)
        .port(relay.port.unwrap_or(relay.tls.default_port()))
        .tls(tls)
        .timeout(Some(relay.timeout));
    if let Some((user, password)) = &relay.credentials {
        builder = builder
            .credentials(Credentials::new(user.clone(), password.clone()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(builder.build())
}

/// A summary of an SMTP failure that names its kind and reply code only:
/// lettre's `Display` can include the server's reply text, which is not
/// ours to show an agent or a user.
pub fn failure_summary(e: &lettre::transport::smtp::Error) -> String {
    let code = e.status().map(|c| format!(" ({c})")).unwrap_or_default();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_tls() {
        "TLS failed"
    } else if e.is_permanent() {
        "relay refused the message"
    } else if e.is_transient() {
        "relay deferred the message"
    } else {
        "connection to the relay failed"
    };
    format!("smtp: {kind}{code}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(host: &str, tls: SmtpTls) -> Relay<'_> {
        Relay {
            host,
            port: None,
            tls,
            timeout: Duration::from_secs(1),
            credentials: None,
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "smtp.example.com",
            "10.0.0.1",
            "localhost.evil.com",
            "[::2]",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn clear_text_only_to_this_machine() {
        assert!(transport(&relay("127.0.0.1", SmtpTls::None)).is_ok());
        assert_eq!(
            transport(&relay("smtp.example.com", SmtpTls::None)).err(),
            Some(RelayError::ClearTextRemote("smtp.example.com".into()))
        );
        assert!(transport(&relay("smtp.example.com", SmtpTls::Starttls)).is_ok());
        assert!(transport(&relay("smtp.example.com", SmtpTls::Implicit)).is_ok());
    }

    #[test]
    fn default_ports_and_names() {
        assert_eq!(SmtpTls::Starttls.default_port(), 587);
        assert_eq!(SmtpTls::Implicit.default_port(), 465);
        assert_eq!(SmtpTls::None.default_port(), 25);
        let parsed: SmtpTls = serde_json::from_str("\"implicit\"").expect("parses");
        assert_eq!(parsed, SmtpTls::Implicit);
        assert_eq!(SmtpTls::default(), SmtpTls::Starttls);
    }
}
