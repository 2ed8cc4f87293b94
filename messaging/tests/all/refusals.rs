//! Every refusal, in the documented check order, and what it leaves behind.

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

// ---------------------------------------------------------------- refusals, in check order

#[tokio::test]
async fn refuses_not_configured_channel() {
    let dir = TempDir::new().expect("tempdir");
    let config = MessagingConfig {
        email: Some(outbox_email(dir.path())),
        sms: None,
        templates: templates(),
    };
    let h = Harness::build(config, dir, 100);
    assert_refused(
        &h,
        otp("+14155550100", "1"),
        SendError::NotConfigured,
        "not-configured",
        None,
    )
    .await;
    // The email channel still works.
    h.send(welcome("bob@example.com", "Bob"))
        .await
        .expect("email sent");
}

#[tokio::test]
async fn refuses_unknown_template() {
    let h = Harness::servers(100).await;
    let req = request(Channel::Email, "nope", "bob@example.com", &[]);
    assert_refused(
        &h,
        req,
        SendError::TemplateNotFound,
        "template-not-found",
        None,
    )
    .await;
}

#[tokio::test]
async fn a_template_not_granted_to_the_agent_is_not_found() {
    let h = Harness::servers(100).await;
    let m = h.messaging.messenger(AgentGrants {
        templates: Some(vec!["otp".into()]),
        ..grants()
    });
    let c = ctx("agent-1");
    assert_eq!(
        m.send(&c, welcome("bob@example.com", "Bob")).await,
        Err(SendError::TemplateNotFound)
    );
    let granted = h.messaging.messenger(AgentGrants {
        templates: Some(vec!["welcome".into()]),
        ..grants()
    });
    granted
        .send(&c, welcome("bob@example.com", "Bob"))
        .await
        .expect("a granted template is sent");
}

#[tokio::test]
async fn a_deployment_s_templates_replace_the_configured_ones() {
    let h = Harness::outbox(100);
    let greeting = TemplateConfig {
        max_lengths: [("name".to_owned(), 3)].into(),
        ..template(
            "greeting",
            ChannelId::Email,
            Some("Hi {{ name | upper }}"),
            "{% if name == \"Bob\" %}Hello Bob{% else %}Hello {{ name }}{% endif %}",
            &["name"],
        )
    };
    let draft = TemplateConfig {
        approved: false,
        ..template("pending", ChannelId::Email, Some("P"), "P", &[])
    };
    // Outside the safe subset: left out on the node, whatever its approval.
    let unsafe_one = template(
        "huge",
        ChannelId::Email,
        Some("H"),
        "{{ name * 9 }}",
        &["name"],
    );
    let observed = Arc::new(MemoryAuditLog::new());
    let m = h
        .messaging
        .messenger(AgentGrants {
            templates: Some(vec![
                "greeting".into(),
                "pending".into(),
                "huge".into(),
                "welcome".into(),
            ]),
            ..grants()
        })
        .with_templates(&[greeting, draft, unsafe_one])
        .with_observer(Arc::clone(&observed) as Arc<dyn AuditLog>);
    let c = ctx("agent-1");
    let sent = m
        .send(
            &c,
            request(
                Channel::Email,
                "greeting",
                "bob@example.com",
                &[("name", "Bob")],
            ),
        )
        .await
        .expect("the deployment's template is sent");
    // The configured `welcome` does not exist for this messenger.
    assert_eq!(
        m.send(&c, welcome("bob@example.com", "Bob")).await,
        Err(SendError::TemplateNotFound)
    );
    assert_eq!(
        m.send(
            &c,
            request(Channel::Email, "pending", "bob@example.com", &[])
        )
        .await,
        Err(SendError::TemplateNotApproved)
    );
    assert_eq!(
        m.send(
            &c,
            request(Channel::Email, "huge", "bob@example.com", &[("name", "x")])
        )
        .await,
        Err(SendError::TemplateNotFound)
    );
    // The per-variable limit (3 characters) applies.
    assert_eq!(
        m.send(
            &c,
            request(
                Channel::Email,
                "greeting",
                "bob@example.com",
                &[("name", "Robert")]
            )
        )
        .await,
        Err(SendError::VariableInvalid("name".into()))
    );
    let records = observed.records();
    assert_eq!(records.len(), 5, "{records:?}");
    assert_eq!(
        records,
        h.audit.records(),
        "the observer sees what the audit log sees"
    );
    assert_eq!(records[0].message_id, sent.message_id);
    assert_eq!(records[0].status, AuditStatus::Sent);
    assert!(records[0].provider_message_id.is_some());
    assert_eq!(records[2].reason.as_deref(), Some("template-not-approved"));
    let files: Vec<_> = std::fs::read_dir(h.dir.path().join("outbox"))
        .expect("outbox")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).expect("file"))
        .collect();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].contains("Hello Bob") && files[0].contains("Hi BOB"),
        "{}",
        files[0]
    );
    // The same set again comes from the cache and behaves the same.
    let again = h
        .messaging
        .messenger(AgentGrants {
            templates: Some(vec!["greeting".into()]),
            ..grants()
        })
        .with_templates(&[template("greeting", ChannelId::Email, Some("S"), "B", &[])]);
    again
        .send(
            &c,
            request(Channel::Email, "greeting", "bob@example.com", &[]),
        )
        .await
        .expect("another definition under the same id is its own set");
}

#[tokio::test]
async fn refuses_unapproved_template() {
    let h = Harness::servers(100).await;
    let req = request(Channel::Email, "draft", "bob@example.com", &[]);
    assert_refused(
        &h,
        req,
        SendError::TemplateNotApproved,
        "template-not-approved",
        None,
    )
    .await;
}

#[tokio::test]
async fn refuses_template_of_another_channel() {
    let h = Harness::servers(100).await;
    let req = request(
        Channel::Sms,
        "welcome",
        "+14155550100",
        &[("name", "a"), ("code", "1")],
    );
    assert_refused(&h, req, SendError::WrongChannel, "wrong-channel", None).await;
}

#[tokio::test]
async fn refuses_variable_not_allowed() {
    let h = Harness::servers(100).await;
    let req = request(
        Channel::Email,
        "welcome",
        "bob@example.com",
        &[("name", "Bob"), ("code", "1"), ("from", "evil@x.test")],
    );
    assert_refused(
        &h,
        req,
        SendError::VariableNotAllowed("from".into()),
        "variable-not-allowed",
        Some("from"),
    )
    .await;
}

#[tokio::test]
async fn refuses_variable_too_long() {
    let h = Harness::servers(100).await;
    // otp allows 8 characters (counted as characters, not bytes).
    h.send(otp(
        "+14155550100",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
    ))
    .await
    .expect("8 characters are fine");
    let h = Harness::servers(100).await;
    assert_refused(
        &h,
        otp("+14155550100", "123456789"),
        SendError::VariableInvalid("code".into()),
        "variable-invalid",
        Some("code"),
    )
    .await;
}

#[tokio::test]
async fn refuses_control_characters_in_variables() {
    let h = Harness::servers(100).await;
    for bad in [
        "Bob\r\nX",
        "Bob\nX",
        "Bob\rX",
        "Bob\0",
        "Bob\tX",
        "Bob\u{85}X",
        "Bob\u{2028}X",
    ] {
        assert_refused(
            &h,
            welcome("bob@example.com", bad),
            SendError::VariableInvalid("name".into()),
            "variable-invalid",
            Some("name"),
        )
        .await;
    }
}

#[tokio::test]
async fn refuses_repeated_variable() {
    let h = Harness::servers(100).await;
    let req = request(
        Channel::Email,
        "welcome",
        "bob@example.com",
        &[("name", "Bob"), ("code", "1"), ("name", "Eve")],
    );
    assert_refused(
        &h,
        req,
        SendError::VariableInvalid("name".into()),
        "variable-invalid",
        Some("name"),
    )
    .await;
}

#[tokio::test]
async fn refuses_missing_variable() {
    let h = Harness::servers(100).await;
    let req = request(
        Channel::Email,
        "welcome",
        "bob@example.com",
        &[("name", "Bob")],
    );
    assert_refused(
        &h,
        req,
        SendError::VariableMissing("code".into()),
        "variable-missing",
        Some("code"),
    )
    .await;
    // A declared but unused variable is not required.
    let req = request(
        Channel::Email,
        "welcome",
        "bob@example.com",
        &[("name", "Bob"), ("code", "1")],
    );
    h.send(req).await.expect("`unused` is optional");
}

#[tokio::test]
async fn refuses_invalid_recipients() {
    let h = Harness::servers(100).await;
    for bad in [
        "bob",
        "Bob <bob@example.com>",
        "bob@example.com\r\nBcc: eve@evil.test",
        "bob@example.com, eve@evil.test",
        "+14155550100",
    ] {
        assert_refused(
            &h,
            welcome(bad, "Bob"),
            SendError::InvalidRecipient,
            "invalid-recipient",
            None,
        )
        .await;
    }
    for bad in [
        "14155550100",
        "+1415555",
        "+1 415 555 0100",
        "bob@example.com",
        "+1415555010000000",
    ] {
        assert_refused(
            &h,
            otp(bad, "1"),
            SendError::InvalidRecipient,
            "invalid-recipient",
            None,
        )
        .await;
    }
}

#[tokio::test]
async fn refuses_recipient_not_on_the_agents_list() {
    let h = Harness::servers(100).await;
    assert_refused(
        &h,
        welcome("eve@example.com", "Eve"),
        SendError::RecipientNotAllowed,
        "recipient-not-allowed",
        None,
    )
    .await;
    assert_refused(
        &h,
        welcome("eve@sub.corp.test", "Eve"),
        SendError::RecipientNotAllowed,
        "recipient-not-allowed",
        None,
    )
    .await;
    assert_refused(
        &h,
        otp("+14155550199", "1"),
        SendError::RecipientNotAllowed,
        "recipient-not-allowed",
        None,
    )
    .await;
    // Case does not matter for email addresses on the list.
    h.send(welcome("BOB@Example.COM", "Bob"))
        .await
        .expect("same mailbox");
}

#[tokio::test]
async fn refuses_channel_the_agent_was_not_granted() {
    let h = Harness::servers(100).await;
    let email_only = AgentGrants {
        channels: vec![ChannelId::Email],
        ..grants()
    };
    let got = h
        .messaging
        .messenger(email_only)
        .send(&ctx("agent-1"), otp("+14155550100", "1"))
        .await;
    assert_eq!(got, Err(SendError::ChannelNotAllowed));
    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Refused);
    assert_eq!(rec.reason.as_deref(), Some("channel-not-allowed"));
    assert!(h.sms().requests().is_empty());
    assert_eq!(h.ledger.account("agent-1").spent, 0);
}

#[tokio::test]
async fn rate_limit_refuses_the_message_after_the_burst() {
    let dir = TempDir::new().expect("tempdir");
    let mut email = outbox_email(dir.path());
    email.rate_limit = RateLimitConfig {
        per_minute: 1,
        burst: 3,
    };
    let config = MessagingConfig {
        email: Some(email),
        sms: Some(outbox_sms(dir.path())),
        templates: templates(),
    };
    let h = Harness::build(config, dir, 1_000);
    for i in 0..3 {
        h.send(welcome("bob@example.com", "Bob"))
            .await
            .unwrap_or_else(|e| panic!("message {i} within the burst: {e:?}"));
    }
    let got = h.send(welcome("bob@example.com", "Bob")).await;
    let Err(SendError::RateLimited(ms)) = got else {
        panic!("expected rate-limited, got {got:?}");
    };
    assert!((1..=60_000).contains(&ms), "retry after {ms} ms");
    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Refused);
    assert_eq!(rec.reason.as_deref(), Some("rate-limited"));
    assert_eq!(rec.detail, Some(ms.to_string()));
    assert_eq!(h.outbox_files().len(), 3);
    assert_eq!(
        h.ledger.account("agent-1").spent,
        3 * EMAIL_COST,
        "the refused one is free"
    );

    // The limit is per (agent, channel): SMS and other agents are unaffected.
    h.send(otp("+14155550100", "1"))
        .await
        .expect("sms has its own limit");
    let other = h
        .messaging
        .messenger(grants())
        .send(&ctx("agent-2"), welcome("bob@example.com", "Bob"))
        .await;
    // agent-2 has no budget account: it passes the rate limit and is then
    // refused by the ledger, which proves it was not rate limited.
    assert!(
        matches!(other, Err(SendError::BudgetExceeded(_))),
        "{other:?}"
    );
}

#[tokio::test]
async fn refuses_when_the_budget_cannot_cover_the_cost() {
    let h = Harness::servers(EMAIL_COST - 3).await;
    assert_refused(
        &h,
        welcome("bob@example.com", "Bob"),
        SendError::BudgetExceeded(Shortfall {
            needed: EMAIL_COST,
            available: EMAIL_COST - 3,
        }),
        "budget-exceeded",
        Some("needed 10, available 7"),
    )
    .await;
}

#[tokio::test]
async fn tokens_are_returned_when_sms_delivery_fails() {
    let h = Harness::servers(100).await;
    h.sms().fail_with(Some(500));
    let got = h.send(otp("+14155550100", "1")).await;
    let Err(SendError::DeliveryFailed(summary)) = got else {
        panic!("expected delivery-failed, got {got:?}");
    };
    assert!(summary.contains("HTTP 500"), "{summary}");
    assert!(
        summary.contains("21610"),
        "Twilio's error code is passed on: {summary}"
    );
    assert!(
        !summary.contains(TWILIO_TOKEN) && !summary.contains(TWILIO_SID),
        "{summary}"
    );
    assert!(
        !summary.contains("test server"),
        "provider text is not passed on: {summary}"
    );
    assert_eq!(h.sms().requests().len(), 1, "the provider was called");
    assert_eq!(
        h.ledger.account("agent-1"),
        Account {
            allocated: 100,
            spent: 0,
            reserved: 0
        }
    );
    assert_eq!(h.ledger.open_reservations(), 0);
    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Failed);
    assert_eq!(rec.reason.as_deref(), Some("delivery-failed"));
    assert_eq!(rec.detail.as_deref(), Some(summary.as_str()));
    assert_eq!(rec.tokens_charged, 0);

    // Once the provider recovers, the same message is charged.
    h.sms().fail_with(None);
    let receipt = h.send(otp("+14155550100", "1")).await.expect("sent");
    assert_eq!(receipt.tokens_charged, SMS_COST);
    assert_eq!(h.ledger.account("agent-1").spent, SMS_COST);
}

#[tokio::test]
async fn tokens_are_returned_when_the_smtp_relay_refuses() {
    let h = Harness::servers(100).await;
    h.smtp().reject_data(Some(554));
    let got = h.send(welcome("bob@example.com", "Bob")).await;
    let Err(SendError::DeliveryFailed(summary)) = got else {
        panic!("expected delivery-failed, got {got:?}");
    };
    assert!(summary.contains("554"), "{summary}");
    assert!(
        !summary.contains(SMTP_PASSWORD) && !summary.contains("test server"),
        "{summary}"
    );
    assert_eq!(h.ledger.account("agent-1").spent, 0);
    assert_eq!(h.ledger.open_reservations(), 0);
    assert_eq!(h.last_audit().status, AuditStatus::Failed);
}

#[tokio::test]
async fn wrong_smtp_password_fails_without_leaking_it() {
    let dir = TempDir::new().expect("tempdir");
    let smtp = SmtpServer::start(SmtpServerConfig::with_credentials(
        SMTP_USER,
        "the-real-one",
    ))
    .await
    .expect("smtp");
    let config = MessagingConfig {
        email: Some(smtp_email(dir.path(), &smtp)),
        sms: None,
        templates: templates(),
    };
    let h = Harness::build(config, dir, 100);
    let got = h.send(welcome("bob@example.com", "Bob")).await;
    let Err(SendError::DeliveryFailed(summary)) = got else {
        panic!("expected delivery-failed, got {got:?}");
    };
    assert!(
        summary.starts_with("smtp:") && !summary.contains(SMTP_PASSWORD),
        "{summary}"
    );
    assert!(smtp.messages().is_empty());
    assert_eq!(h.ledger.account("agent-1").spent, 0);
}

#[tokio::test]
async fn header_injection_through_the_subject_is_refused() {
    let h = Harness::servers(100).await;
    for payload in [
        "Bob\r\nBcc: eve@evil.test",
        "Bob\nBcc: eve@evil.test",
        "Bob\r\n\r\n<html>spoofed body",
        "Bob\u{2028}Bcc: eve@evil.test",
    ] {
        assert_refused(
            &h,
            welcome("bob@example.com", payload),
            SendError::VariableInvalid("name".into()),
            "variable-invalid",
            Some("name"),
        )
        .await;
    }
    // A benign send afterwards carries exactly the expected headers.
    h.send(welcome("bob@example.com", "Bob"))
        .await
        .expect("sent");
    let mail = &h.smtp().messages()[0];
    assert_eq!(mail.rcpt_to, vec!["bob@example.com".to_owned()]);
    for name in mail.header_names() {
        assert!(
            [
                "From",
                "To",
                "Subject",
                "Message-ID",
                "Content-Type",
                "Content-Transfer-Encoding",
                "Date",
                "MIME-Version"
            ]
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&name)),
            "unexpected header {name}"
        );
    }
}

#[tokio::test]
async fn checks_run_in_the_documented_order() {
    let h = Harness::servers(0).await;
    let only_email = AgentGrants {
        channels: vec![],
        recipients: vec![],
        templates: None,
    };
    let m = h.messaging.messenger(only_email);
    let c = ctx("agent-1");
    // Each request fails several checks; the earliest one wins.
    let cases = [
        (
            request(Channel::Email, "draft", "not an address", &[("x", "\n")]),
            SendError::TemplateNotApproved,
        ),
        (
            request(Channel::Sms, "welcome", "not an address", &[("x", "\n")]),
            SendError::WrongChannel,
        ),
        (
            request(
                Channel::Email,
                "welcome",
                "bad",
                &[("name", "\n"), ("x", "1")],
            ),
            SendError::VariableNotAllowed("x".into()),
        ),
        (
            request(Channel::Email, "welcome", "bad", &[("name", "\n")]),
            SendError::VariableInvalid("name".into()),
        ),
        (
            request(Channel::Email, "welcome", "bad", &[("name", "Bob")]),
            SendError::VariableMissing("code".into()),
        ),
        (welcome("bad", "Bob"), SendError::InvalidRecipient),
        (
            welcome("eve@example.com", "Bob"),
            SendError::RecipientNotAllowed,
        ),
    ];
    for (req, expected) in cases {
        assert_eq!(m.send(&c, req.clone()).await, Err(expected), "{req:?}");
    }
    // Allowed recipient, but no channel grant (and no budget): channel first.
    let m = h.messaging.messenger(AgentGrants {
        channels: vec![],
        ..grants()
    });
    assert_eq!(
        m.send(&c, welcome("bob@example.com", "Bob")).await,
        Err(SendError::ChannelNotAllowed)
    );
    // Everything granted, no budget: the ledger refuses.
    let got = h.send(welcome("bob@example.com", "Bob")).await;
    assert!(matches!(got, Err(SendError::BudgetExceeded(_))), "{got:?}");
    assert_eq!(h.audit.records().len(), 9, "every attempt is recorded");
}

#[tokio::test]
async fn jsonl_audit_log_has_one_line_per_attempt() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let audit = Arc::new(JsonlAuditLog::open(&path).await.expect("open"));
    let config = MessagingConfig {
        email: Some(outbox_email(dir.path())),
        sms: None,
        templates: templates(),
    };
    let messaging = Messaging::new(&config, audit, None).expect("config");
    let m = messaging.messenger(grants());
    let receipt = m
        .send(&ctx("agent-1"), welcome("bob@example.com", "Bob"))
        .await
        .expect("sent");
    assert_eq!(receipt.tokens_charged, 0, "no ledger, nothing charged");
    let refused = m
        .send(&ctx("agent-1"), welcome("eve@example.com", "Eve"))
        .await;
    assert_eq!(refused, Err(SendError::RecipientNotAllowed));
    let nc = m.send(&ctx("agent-1"), otp("+14155550100", "1")).await;
    assert_eq!(nc, Err(SendError::NotConfigured));

    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let recs: Vec<AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    assert_eq!(recs[0].status, AuditStatus::Sent);
    assert_eq!(recs[0].message_id, receipt.message_id);
    assert_eq!(recs[1].reason.as_deref(), Some("recipient-not-allowed"));
    assert_eq!(recs[2].reason.as_deref(), Some("not-configured"));
    assert_eq!(recs[2].channel, ChannelId::Sms);
    // The wire format uses these exact names.
    let raw: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
    for key in [
        "message_id",
        "tenant_id",
        "agent_id",
        "run_id",
        "channel",
        "template_id",
        "recipient",
        "status",
        "reason",
        "detail",
        "tokens_charged",
        "provider_message_id",
        "requested_at",
        "finished_at",
    ] {
        assert!(raw.get(key).is_some(), "missing {key} in {raw}");
    }
    assert_eq!(raw["status"], "refused");
}

#[tokio::test]
async fn an_interrupted_call_still_settles_and_records() {
    let h = Harness::servers(100).await;
    // Drop the call right away, as the host does when the run's deadline
    // passes; the attempt continues in its own task.
    let m = h.messaging.messenger(grants());
    let c = ctx("agent-1");
    let fut = m.send(&c, otp("+14155550100", "1"));
    let _ = tokio::time::timeout(std::time::Duration::from_micros(1), fut).await;
    for _ in 0..200 {
        if !h.audit.records().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Sent);
    assert_eq!(h.ledger.open_reservations(), 0);
    assert_eq!(h.ledger.account("agent-1").spent, SMS_COST);
}

/// A quota that admits `left` messages, then refuses with a wait.
struct CountingQuota(Mutex<u32>);

#[async_trait]
impl delta_messaging::MessageQuota for CountingQuota {
    async fn admit(&self, _ctx: &CallContext, _channel: ChannelId) -> Result<(), u64> {
        let mut left = self.0.lock().expect("lock");
        if *left == 0 {
            return Err(5_000);
        }
        *left -= 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_quota_refusal_is_rate_limited_and_sends_and_charges_nothing() {
    let dir = TempDir::new().expect("tempdir");
    let config = MessagingConfig {
        email: Some(outbox_email(dir.path())),
        sms: Some(outbox_sms(dir.path())),
        templates: templates(),
    };
    let audit = Arc::new(MemoryAuditLog::new());
    let ledger = TestLedger::with("agent-1", 1_000);
    let messaging = Messaging::with_quota(
        &config,
        Arc::clone(&audit) as Arc<dyn AuditLog>,
        Some(Arc::clone(&ledger) as Arc<dyn BudgetLedger>),
        Some(Arc::new(CountingQuota(Mutex::new(1)))),
    )
    .expect("valid config");
    let h = Harness {
        messaging,
        audit,
        ledger,
        smtp: None,
        sms: None,
        dir,
    };
    h.send(welcome("bob@example.com", "Bob"))
        .await
        .expect("the first is admitted");
    let got = h.send(welcome("bob@example.com", "Bob")).await;
    assert_eq!(got, Err(SendError::RateLimited(5_000)));
    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Refused);
    assert_eq!(rec.reason.as_deref(), Some("rate-limited"));
    assert_eq!(
        h.outbox_files().len(),
        1,
        "the refused message was delivered"
    );
    assert_eq!(
        h.ledger.account("agent-1").spent,
        EMAIL_COST,
        "the refused one is free"
    );
}
