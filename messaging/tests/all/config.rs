//! The configuration: defaults, unknown fields, unsafe settings.

#![allow(unused_imports)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use delta_host_api::bindings::delta::agent::types::Shortfall;
use delta_host_api::budget::{
    Balance, BudgetError, BudgetLedger, LedgerError, Reservation, Settlement, TokenRequest,
};
use delta_host_api::messaging::{Channel, SendError, SendRequest};
use delta_host_api::{CallContext, Messenger};
use delta_messaging::{
    AgentGrants, AuditLog, AuditRecord, AuditStatus, BuildError, ChannelId, EmailBackend,
    EmailConfig, JsonlAuditLog, MemoryAuditLog, Messaging, MessagingConfig, OutboxConfig,
    RateLimitConfig, SecretSource, SmsBackend, SmsConfig, SmtpConfig, SmtpTls, TemplateConfig,
    TwilioConfig,
};
use delta_test_servers::sms::SmsServer;
use delta_test_servers::smtp::{SmtpServer, SmtpServerConfig};
use tempfile::TempDir;

use crate::common::*;

// ---------------------------------------------------------------- configuration

fn build_err(config: &MessagingConfig) -> BuildError {
    Messaging::new(config, Arc::new(MemoryAuditLog::new()), None)
        .expect_err("config must be refused")
}

#[test]
fn config_parses_with_defaults_and_refuses_unknown_fields() {
    let json = serde_json::json!({
        "email": {
            "from": "ops@example.com",
            "backend": { "kind": "smtp", "host": "smtp.example.com", "username": "u",
                         "password": { "env": "SMTP_PASSWORD" } }
        },
        "sms": {
            "from": "+15005550006",
            "backend": { "kind": "twilio", "account_sid": "AC1", "auth_token": { "file": "/run/t" } }
        },
        "templates": [ { "id": "t", "channel": "sms", "body": "hi" } ]
    });
    let config: MessagingConfig = serde_json::from_value(json.clone()).expect("parses");
    let email = config.email.as_ref().expect("email");
    assert_eq!(email.cost_tokens, 0);
    assert_eq!(
        email.rate_limit,
        RateLimitConfig {
            per_minute: 10,
            burst: 5
        }
    );
    let EmailBackend::Smtp(smtp) = &email.backend else {
        panic!("smtp")
    };
    assert_eq!(
        (smtp.tls, smtp.port, smtp.timeout_ms),
        (SmtpTls::Starttls, None, 30_000)
    );
    assert_eq!(
        smtp.password,
        Some(SecretSource::Env("SMTP_PASSWORD".into()))
    );
    let SmsBackend::Twilio(t) = &config.sms.as_ref().expect("sms").backend else {
        panic!("twilio")
    };
    assert_eq!(t.base_url, "https://api.twilio.com");
    let tpl = &config.templates[0];
    assert!(!tpl.approved && !tpl.html && tpl.variables.is_empty());
    assert_eq!(tpl.max_variable_len, 256);

    for (pointer, key) in [
        ("", "extra"),
        ("/email", "reply_to"),
        ("/email/backend", "pasword"),
        ("/sms/backend", "token"),
        ("/templates/0", "aproved"),
    ] {
        let mut bad = json.clone();
        bad.pointer_mut(pointer)
            .and_then(|v| v.as_object_mut())
            .expect("object")
            .insert(key.into(), serde_json::json!(true));
        assert!(
            serde_json::from_value::<MessagingConfig>(bad).is_err(),
            "{pointer}/{key} accepted"
        );
    }
}

#[test]
fn config_refuses_unsafe_or_inconsistent_settings() {
    let dir = TempDir::new().expect("tempdir");
    let base = MessagingConfig {
        email: Some(outbox_email(dir.path())),
        sms: None,
        templates: templates(),
    };

    // Plain SMTP to a remote host.
    let mut c = base.clone();
    c.email = Some(EmailConfig {
        backend: EmailBackend::Smtp(SmtpConfig {
            host: "smtp.example.com".into(),
            port: None,
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout_ms: 1_000,
        }),
        ..outbox_email(dir.path())
    });
    assert!(matches!(build_err(&c), BuildError::Backend { .. }));

    // Plain HTTP to a remote SMS API.
    let mut c = base.clone();
    c.sms = Some(SmsConfig {
        backend: SmsBackend::Twilio(TwilioConfig {
            base_url: "http://api.example.com".into(),
            account_sid: "AC1".into(),
            auth_token: secret_file(dir.path(), "t", "x"),
            timeout_ms: 1_000,
        }),
        ..outbox_sms(dir.path())
    });
    assert!(matches!(build_err(&c), BuildError::Backend { .. }));

    // Missing secret: the error names the variable, not a value.
    let mut c = base.clone();
    c.sms = Some(SmsConfig {
        backend: SmsBackend::Twilio(TwilioConfig {
            base_url: "https://api.example.com".into(),
            account_sid: "AC1".into(),
            auth_token: SecretSource::Env("DELTA_TEST_SURELY_UNSET_VARIABLE".into()),
            timeout_ms: 1_000,
        }),
        ..outbox_sms(dir.path())
    });
    assert!(matches!(build_err(&c), BuildError::Secret { .. }));

    // Bad senders.
    let mut c = base.clone();
    c.email.as_mut().expect("email").from = "not an address".into();
    assert!(matches!(build_err(&c), BuildError::Backend { .. }));
    let mut c = base.clone();
    c.sms = Some(SmsConfig {
        from: "5550006".into(),
        ..outbox_sms(dir.path())
    });
    assert!(matches!(build_err(&c), BuildError::Backend { .. }));

    // Zero rate.
    let mut c = base.clone();
    c.email.as_mut().expect("email").rate_limit.burst = 0;
    assert!(matches!(build_err(&c), BuildError::Backend { .. }));

    // Template problems.
    let bad_templates = [
        template("a", ChannelId::Email, None, "no subject", &[]),
        template("a", ChannelId::Sms, Some("s"), "sms with subject", &[]),
        template(
            "a",
            ChannelId::Email,
            Some("Hi {{ who }}"),
            "undeclared variable",
            &[],
        ),
        template(
            "a",
            ChannelId::Email,
            Some("Hi\r\nBcc: x@y.z"),
            "newline in subject",
            &[],
        ),
        template("a", ChannelId::Email, Some("Hi"), "{{ broken", &[]),
        template(
            "a",
            ChannelId::Email,
            Some("Hi"),
            "bad name",
            &["not-an-identifier"],
        ),
        TemplateConfig {
            html: true,
            ..template("a", ChannelId::Sms, None, "html sms", &[])
        },
    ];
    for t in bad_templates {
        let mut c = base.clone();
        c.templates = vec![t.clone()];
        assert!(
            matches!(build_err(&c), BuildError::Template { .. }),
            "{t:?} accepted"
        );
    }
    let mut c = base.clone();
    c.templates
        .push(template("welcome", ChannelId::Sms, None, "dup", &[]));
    assert!(matches!(build_err(&c), BuildError::Template { .. }));

    // Globals such as `range` are not variables.
    let mut c = base.clone();
    c.templates = vec![template(
        "a",
        ChannelId::Email,
        Some("Hi"),
        "{% for i in range(2) %}{{ i }}{% endfor %}",
        &[],
    )];
    Messaging::new(&c, Arc::new(MemoryAuditLog::new()), None).expect("range is a function");
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    // The test relay offers no STARTTLS: lettre must stop before AUTH, so
    // neither the password nor the message crosses the plaintext link.
    let dir = TempDir::new().expect("tempdir");
    let smtp = SmtpServer::start(SmtpServerConfig::default())
        .await
        .expect("smtp");
    let mut email = smtp_email(dir.path(), &smtp);
    let EmailBackend::Smtp(s) = &mut email.backend else {
        panic!("smtp")
    };
    s.tls = SmtpTls::Starttls;
    let config = MessagingConfig {
        email: Some(email),
        sms: None,
        templates: templates(),
    };
    let h = Harness::build(config, dir, 100);
    let got = h.send(welcome("bob@example.com", "Bob")).await;
    assert!(matches!(got, Err(SendError::DeliveryFailed(_))), "{got:?}");
    assert!(smtp.connections() >= 1, "the relay was contacted");
    assert!(smtp.messages().is_empty());
    assert_eq!(smtp.auth_attempts(), 0, "no credentials over plaintext");
    assert_eq!(h.ledger.account("agent-1").spent, 0);
    assert_eq!(h.ledger.open_reservations(), 0);
}
