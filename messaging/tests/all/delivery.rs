//! Messages that arrive: SMTP, the Twilio-compatible API, the file outbox.

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

// ---------------------------------------------------------------- delivery

#[tokio::test]
async fn email_arrives_with_operator_from_subject_body_and_auth() {
    let h = Harness::servers(100).await;
    let receipt = h
        .send(welcome("bob@example.com", "Bob"))
        .await
        .expect("sent");
    assert_eq!(receipt.tokens_charged, EMAIL_COST);
    assert_eq!(h.ledger.account("agent-1").spent, EMAIL_COST);
    assert_eq!(h.ledger.account("agent-1").reserved, 0);

    let mails = h.smtp().messages();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "ops@example.com");
    assert_eq!(mail.rcpt_to, vec!["bob@example.com".to_owned()]);
    let from = mail.header("From").expect("From");
    assert!(
        from.contains("<ops@example.com>") && from.contains("Delta Ops"),
        "{from}"
    );
    assert_eq!(mail.header("To").as_deref(), Some("bob@example.com"));
    assert_eq!(mail.header("Subject").as_deref(), Some("Welcome, Bob"));
    assert!(
        mail.header("Content-Type")
            .expect("ct")
            .starts_with("text/plain")
    );
    assert!(
        mail.header("Message-ID")
            .expect("id")
            .contains(&receipt.message_id),
        "Message-ID carries the host's id"
    );
    assert!(
        mail.body().contains("Hello Bob, your code is 42."),
        "{}",
        mail.body()
    );
    let auth = mail.auth.as_ref().expect("AUTH was used");
    assert_eq!(auth.username, SMTP_USER);
    assert_eq!(auth.password, SMTP_PASSWORD);

    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Sent);
    assert_eq!(rec.message_id, receipt.message_id);
    assert_eq!(
        (
            rec.tenant_id.as_str(),
            rec.agent_id.as_str(),
            rec.run_id.as_str()
        ),
        ("tenant-1", "agent-1", "run-1")
    );
    assert_eq!(rec.channel, ChannelId::Email);
    assert_eq!(rec.template_id, "welcome");
    assert_eq!(rec.recipient, "bob@example.com");
    assert_eq!(rec.reason, None);
    assert_eq!(rec.tokens_charged, EMAIL_COST);
    assert!(
        rec.provider_message_id
            .expect("provider id")
            .contains("queued as test-1")
    );
    assert!(rec.requested_at <= rec.finished_at);
}

#[tokio::test]
async fn html_email_escapes_variables_in_the_body_only() {
    let h = Harness::servers(100).await;
    let name = "<b>Bob</b> & co";
    h.send(request(
        Channel::Email,
        "report",
        "alice@corp.test",
        &[("name", name)],
    ))
    .await
    .expect("sent");
    let mail = &h.smtp().messages()[0];
    assert!(
        mail.header("Content-Type")
            .expect("ct")
            .starts_with("text/html")
    );
    let body = mail.body();
    assert!(
        body.contains("<p>Hello &lt;b&gt;Bob&lt;&#x2f;b&gt; &amp; co</p>"),
        "{body}"
    );
    assert!(!body.contains("<b>"), "{body}");
    // The subject is not HTML: it is sent as rendered.
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Report for <b>Bob</b> & co")
    );
    assert_eq!(mail.rcpt_to, vec!["alice@corp.test".to_owned()]);
}

#[tokio::test]
async fn sms_arrives_with_form_fields_and_basic_auth() {
    let h = Harness::servers(100).await;
    let receipt = h.send(otp("+14155550100", "123456")).await.expect("sent");
    assert_eq!(receipt.tokens_charged, SMS_COST);
    let requests = h.sms().requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.account_sid, TWILIO_SID);
    assert_eq!(
        (r.username.as_str(), r.password.as_str()),
        (TWILIO_SID, TWILIO_TOKEN)
    );
    assert_eq!(r.field("To"), Some("+14155550100"));
    assert_eq!(r.field("From"), Some("+15005550006"));
    assert_eq!(r.field("Body"), Some("Your code is 123456"));
    assert_eq!(h.sms().unauthorized(), 0);
    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Sent);
    assert_eq!(rec.channel, ChannelId::Sms);
    assert_eq!(rec.provider_message_id, r.sid);
    assert_eq!(h.ledger.account("agent-1").spent, SMS_COST);
}

#[tokio::test]
async fn file_outbox_writes_one_file_per_message() {
    let h = Harness::outbox(1_000);
    let a = h
        .send(welcome("bob@example.com", "Bob"))
        .await
        .expect("sent");
    let b = h
        .send(welcome("carol@corp.test", "Carol"))
        .await
        .expect("sent");
    let c = h.send(otp("+14155550100", "99")).await.expect("sent");
    let files = h.outbox_files();
    assert_eq!(files.len(), 3, "{files:?}");
    // No temporary files are left behind by the atomic write.
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "json"))
    );
    let mut by_id = HashMap::new();
    for f in &files {
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f).expect("read")).expect("json");
        by_id.insert(doc["message_id"].as_str().expect("id").to_owned(), doc);
    }
    let doc = &by_id[&a.message_id];
    assert_eq!(doc["channel"], "email");
    assert_eq!(doc["from"], "ops@example.com");
    assert_eq!(doc["to"], "bob@example.com");
    assert_eq!(doc["subject"], "Welcome, Bob");
    assert_eq!(doc["body"], "Hello Bob, your code is 42.");
    assert_eq!(by_id[&b.message_id]["to"], "carol@corp.test");
    let sms = &by_id[&c.message_id];
    assert_eq!(sms["channel"], "sms");
    assert_eq!(sms["to"], "+14155550100");
    assert_eq!(sms["subject"], serde_json::Value::Null);
    assert_eq!(sms["body"], "Your code is 99");
    assert_eq!(
        h.last_audit().provider_message_id,
        Some(format!("{}.json", c.message_id))
    );
    assert_eq!(h.ledger.account("agent-1").spent, 2 * EMAIL_COST + SMS_COST);
}
