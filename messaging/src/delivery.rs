//! The channel backends: SMTP, a Twilio-compatible API, the file outbox.
//!
//! Each backend is built once from configuration (secrets read, addresses
//! parsed, transports constructed) and then only delivers. Failures come back
//! as short summaries that never contain credentials or provider response
//! bodies, because they are shown to the guest.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{Address, AsyncTransport};
use serde::Serialize;

use crate::BuildError;
use crate::config::{ChannelId, OutboxConfig, SecretSource, SmtpConfig, TwilioConfig};
use delta_templates::Rendered;
use delta_templates::recipient::{self, Recipient};

/// Everything a backend needs about one message.
pub(crate) struct Outgoing<'a> {
    pub(crate) message_id: &'a str,
    pub(crate) channel: ChannelId,
    pub(crate) from: &'a str,
    pub(crate) to: &'a Recipient,
    pub(crate) rendered: &'a Rendered,
}

/// A configured backend.
pub(crate) enum Backend {
    Smtp(Box<SmtpBackend>),
    Twilio(TwilioBackend),
    Outbox(OutboxBackend),
}

impl Backend {
    /// Deliver; `Ok` carries the provider's message id.
    pub(crate) async fn deliver(&self, msg: &Outgoing<'_>) -> Result<String, String> {
        match self {
            Backend::Smtp(b) => b.deliver(msg).await,
            Backend::Twilio(b) => b.deliver(msg).await,
            Backend::Outbox(b) => b.deliver(msg).await,
        }
    }
}

/// Read a secret at startup.
pub(crate) fn read_secret(source: &SecretSource, what: &str) -> Result<String, BuildError> {
    let value = match source {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| BuildError::Secret {
            what: what.to_owned(),
            reason: format!("environment variable {var} is not set"),
        })?,
        SecretSource::File(path) => {
            let mut s = std::fs::read_to_string(path).map_err(|e| BuildError::Secret {
                what: what.to_owned(),
                reason: format!("{}: {}", path.display(), e.kind()),
            })?;
            // Files written by editors and `echo` end with a newline that is
            // not part of the secret.
            if s.ends_with('\n') {
                s.pop();
                if s.ends_with('\r') {
                    s.pop();
                }
            }
            s
        }
    };
    if value.is_empty() {
        return Err(BuildError::Secret {
            what: what.to_owned(),
            reason: "empty".into(),
        });
    }
    Ok(value)
}

/// Email through an SMTP relay.
pub(crate) struct SmtpBackend {
    transport: delta_mail::Transport,
    /// Domain of the From address, for the Message-ID header.
    from_domain: String,
    from: Mailbox,
}

impl SmtpBackend {
    pub(crate) fn new(config: &SmtpConfig, from: Mailbox) -> Result<Self, BuildError> {
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                Some((user.clone(), read_secret(password, "smtp password")?))
            }
            (None, None) => None,
            _ => {
                return Err(BuildError::Backend {
                    channel: ChannelId::Email,
                    reason: "username and password go together".into(),
                });
            }
        };
        let transport = delta_mail::transport(&delta_mail::Relay {
            host: &config.host,
            port: config.port,
            tls: config.tls,
            timeout: Duration::from_millis(config.timeout_ms),
            credentials,
        })
        .map_err(|e| BuildError::Backend {
            channel: ChannelId::Email,
            reason: e.to_string(),
        })?;
        Ok(Self {
            transport,
            from_domain: from.email.domain().to_owned(),
            from,
        })
    }

    async fn deliver(&self, msg: &Outgoing<'_>) -> Result<String, String> {
        let Recipient::Email(to) = msg.to else {
            return Err("recipient is not an email address".into());
        };
        let email = build_email(
            &self.from,
            &self.from_domain,
            to,
            msg.message_id,
            msg.rendered,
        )?;
        match self.transport.send(email).await {
            Ok(response) => {
                // The relay's reply to DATA usually carries its queue id.
                let text = response.message().collect::<Vec<_>>().join(" ");
                Ok(if text.is_empty() {
                    response.code().to_string()
                } else {
                    text
                })
            }
            Err(e) => Err(delta_mail::failure_summary(&e)),
        }
    }
}

/// Build the email. Every header value comes from the operator's config, a
/// parsed [`Address`], the host's id, or the subject that was checked to be
/// a single line, so no agent input can add a header.
fn build_email(
    from: &Mailbox,
    from_domain: &str,
    to: &Address,
    message_id: &str,
    rendered: &Rendered,
) -> Result<Message, String> {
    let content_type = if rendered.html {
        ContentType::TEXT_HTML
    } else {
        ContentType::TEXT_PLAIN
    };
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to.clone()))
        .subject(rendered.subject.clone().unwrap_or_default())
        .message_id(Some(format!("<{message_id}@{from_domain}>")))
        .header(content_type)
        .body(rendered.body.clone())
        .map_err(|e| format!("could not build the email: {e}"))
}

/// SMS through a Twilio-compatible API.
pub(crate) struct TwilioBackend {
    client: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
}

impl TwilioBackend {
    pub(crate) fn new(config: &TwilioConfig) -> Result<Self, BuildError> {
        let bad = |reason: String| BuildError::Backend {
            channel: ChannelId::Sms,
            reason,
        };
        let base =
            reqwest::Url::parse(&config.base_url).map_err(|e| bad(format!("base_url: {e}")))?;
        let loopback = base.host_str().is_some_and(delta_mail::is_loopback_host);
        // The auth token travels in every request: never in clear over a
        // network.
        if base.scheme() != "https" && !(base.scheme() == "http" && loopback) {
            return Err(bad(
                "base_url must be https (http only for a loopback host)".into(),
            ));
        }
        if config.account_sid.is_empty()
            || !config
                .account_sid
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(bad("account_sid must be non-empty and alphanumeric".into()));
        }
        let auth_token = read_secret(&config.auth_token, "twilio auth token")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // A redirect would resend credentials to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.base_url.trim_end_matches('/'),
            config.account_sid
        );
        Ok(Self {
            client,
            url,
            account_sid: config.account_sid.clone(),
            auth_token,
        })
    }

    async fn deliver(&self, msg: &Outgoing<'_>) -> Result<String, String> {
        let Recipient::Phone(to) = msg.to else {
            return Err("recipient is not a phone number".into());
        };
        let body = form_encode(&[
            ("To", to.as_str()),
            ("From", msg.from),
            ("Body", msg.rendered.body.as_str()),
        ]);
        let response = self
            .client
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // reqwest's Display includes the URL; say only what happened.
                if e.is_timeout() {
                    "sms: provider timed out".to_owned()
                } else if e.is_connect() {
                    "sms: could not connect to the provider".to_owned()
                } else {
                    "sms: request to the provider failed".to_owned()
                }
            })?;
        let status = response.status();
        let json: Option<serde_json::Value> = response.json().await.ok();
        if !status.is_success() {
            // Twilio's numeric error code is safe and useful; its message
            // text is not shown.
            let code = json
                .as_ref()
                .and_then(|j| j.get("code"))
                .and_then(serde_json::Value::as_u64)
                .map(|c| format!(", error code {c}"))
                .unwrap_or_default();
            return Err(format!(
                "sms: provider answered HTTP {}{code}",
                status.as_u16()
            ));
        }
        json.as_ref()
            .and_then(|j| j.get("sid"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "sms: provider answer has no sid".to_owned())
    }
}

/// `application/x-www-form-urlencoded`, percent-encoding everything but
/// RFC 3986's unreserved characters.
fn form_encode(fields: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, k);
        out.push('=');
        encode(&mut out, v);
    }
    out
}

/// Messages written as files, one JSON document per message.
pub(crate) struct OutboxBackend {
    dir: PathBuf,
}

/// The JSON document the outbox writes for each message.
#[derive(Serialize)]
struct OutboxFile<'a> {
    message_id: &'a str,
    channel: ChannelId,
    from: &'a str,
    to: &'a str,
    subject: Option<&'a str>,
    body: &'a str,
    html: bool,
}

impl OutboxBackend {
    pub(crate) fn new(config: &OutboxConfig, channel: ChannelId) -> Result<Self, BuildError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| BuildError::Backend {
            channel,
            reason: format!("outbox {}: {e}", config.dir.display()),
        })?;
        Ok(Self {
            dir: config.dir.clone(),
        })
    }

    async fn deliver(&self, msg: &Outgoing<'_>) -> Result<String, String> {
        let to = match msg.to {
            Recipient::Email(a) => AsRef::<str>::as_ref(a),
            Recipient::Phone(p) => p.as_str(),
        };
        let doc = OutboxFile {
            message_id: msg.message_id,
            channel: msg.channel,
            from: msg.from,
            to,
            subject: msg.rendered.subject.as_deref(),
            body: &msg.rendered.body,
            html: msg.rendered.html,
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|_| "outbox: encoding failed")?;
        // The message id is host-generated ([a-z0-9-]), so it is a safe
        // file name. Write to a dot-file and rename: a reader of the
        // directory sees whole files or nothing.
        let name = format!("{}.json", msg.message_id);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let dest = self.dir.join(&name);
        let write = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp, &dest).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(format!("outbox: write failed ({})", e.kind()));
        }
        Ok(name)
    }
}

/// Parse the operator's From for `channel`.
pub(crate) fn parse_from(channel: ChannelId, from: &str) -> Result<Mailbox, BuildError> {
    let bad = |reason: String| BuildError::Backend { channel, reason };
    match channel {
        ChannelId::Email => from
            .parse::<Mailbox>()
            .map_err(|e| bad(format!("from {from:?}: {e}"))),
        ChannelId::Sms => Err(bad("internal: SMS has no mailbox".into())),
    }
}

/// Check the operator's SMS sender.
pub(crate) fn check_sms_from(from: &str) -> Result<(), BuildError> {
    if recipient::is_e164(from) {
        Ok(())
    } else {
        Err(BuildError::Backend {
            channel: ChannelId::Sms,
            reason: format!("from {from:?} is not an E.164 number"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("To", "+1415"), ("Body", "a b&c=d\u{e9}")]),
            "To=%2B1415&Body=a%20b%26c%3Dd%C3%A9"
        );
    }

    #[test]
    fn subject_with_newline_cannot_become_a_header() {
        // Even if a multi-line subject reached the builder, lettre must not
        // emit it as a second header; this backs up the checks upstream.
        let from: Mailbox = "Ops <ops@example.com>".parse().expect("mailbox");
        let to: Address = "bob@example.com".parse().expect("address");
        let rendered = Rendered {
            subject: Some("hi\r\nBcc: eve@evil.test".into()),
            body: "x".into(),
            html: false,
        };
        let email = build_email(&from, "example.com", &to, "msg-1", &rendered).expect("build");
        let raw = String::from_utf8(email.formatted()).expect("utf8");
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
    }
}
