//! `delta-messaging` end to end over real loopback servers: the SMTP server
//! and the Twilio-compatible API from `delta-test-servers`, the file outbox,
//! an in-test ledger and the in-memory and JSON-lines audit logs.

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

const SMTP_USER: &str = "relay-user";
const SMTP_PASSWORD: &str = "s3cret-smtp-password";
const TWILIO_SID: &str = "AC0123456789abcdef";
const TWILIO_TOKEN: &str = "s3cret-twilio-token";
const EMAIL_COST: u64 = 10;
const SMS_COST: u64 = 25;

// ---------------------------------------------------------------- ledger

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Account {
    allocated: u64,
    spent: u64,
    reserved: u64,
}

/// A small in-memory ledger (the real one lives in `delta-ledger`).
#[derive(Default)]
struct TestLedger {
    state: Mutex<LedgerState>,
}

/// Accounts by agent, open reservations by id, last reservation number.
type LedgerState = (HashMap<String, Account>, HashMap<String, Reservation>, u64);

impl TestLedger {
    fn with(agent: &str, allocated: u64) -> Arc<Self> {
        let ledger = Self::default();
        ledger.state.lock().expect("lock").0.insert(
            agent.to_owned(),
            Account {
                allocated,
                ..Account::default()
            },
        );
        Arc::new(ledger)
    }

    fn account(&self, agent: &str) -> Account {
        self.state.lock().expect("lock").0[agent]
    }

    fn open_reservations(&self) -> usize {
        self.state.lock().expect("lock").1.len()
    }
}

#[async_trait]
impl BudgetLedger for TestLedger {
    async fn reserve(
        &self,
        ctx: &CallContext,
        amount: u64,
        _purpose: &str,
    ) -> Result<Reservation, LedgerError> {
        let mut guard = self.state.lock().expect("lock");
        let (accounts, reservations, next) = &mut *guard;
        let account = accounts
            .get_mut(&*ctx.agent_id)
            .ok_or_else(|| LedgerError::UnknownAccount(ctx.agent_id.to_string()))?;
        let available = account.allocated - account.spent - account.reserved;
        if available < amount {
            return Err(LedgerError::Insufficient {
                needed: amount,
                available,
            });
        }
        account.reserved += amount;
        *next += 1;
        let r = Reservation {
            id: format!("res-{next}"),
            agent_id: ctx.agent_id.to_string(),
            amount,
        };
        reservations.insert(r.id.clone(), r.clone());
        Ok(r)
    }

    async fn settle(&self, r: &Reservation, used: u64) -> Result<Settlement, LedgerError> {
        let mut guard = self.state.lock().expect("lock");
        let (accounts, reservations, _) = &mut *guard;
        reservations
            .remove(&r.id)
            .ok_or_else(|| LedgerError::UnknownReservation(r.id.clone()))?;
        let account = accounts.get_mut(&r.agent_id).expect("account");
        account.reserved -= r.amount;
        account.spent += used;
        Ok(Settlement {
            charged: used,
            uncovered: 0,
        })
    }

    async fn release(&self, r: &Reservation) -> Result<(), LedgerError> {
        let mut guard = self.state.lock().expect("lock");
        let (accounts, reservations, _) = &mut *guard;
        reservations
            .remove(&r.id)
            .ok_or_else(|| LedgerError::UnknownReservation(r.id.clone()))?;
        accounts.get_mut(&r.agent_id).expect("account").reserved -= r.amount;
        Ok(())
    }

    async fn remaining(&self, ctx: &CallContext) -> Result<Balance, BudgetError> {
        let a = self.account(&ctx.agent_id);
        Ok(Balance {
            allocated: a.allocated,
            spent: a.spent,
            reserved: a.reserved,
            available: a.allocated - a.spent - a.reserved,
        })
    }

    async fn request(
        &self,
        _ctx: &CallContext,
        _amount: u64,
        _reason: String,
    ) -> Result<TokenRequest, BudgetError> {
        Err(BudgetError::NoParent)
    }

    async fn poll_request(
        &self,
        _ctx: &CallContext,
        _id: String,
    ) -> Result<TokenRequest, BudgetError> {
        Err(BudgetError::UnknownRequest)
    }
}

// ---------------------------------------------------------------- setup

fn ctx(agent: &str) -> CallContext {
    CallContext {
        tenant_id: "tenant-1".into(),
        agent_id: agent.into(),
        run_id: "run-1".into(),
    }
}

fn template(
    id: &str,
    channel: ChannelId,
    subject: Option<&str>,
    body: &str,
    vars: &[&str],
) -> TemplateConfig {
    TemplateConfig {
        id: id.into(),
        channel,
        subject: subject.map(str::to_owned),
        body: body.into(),
        html: false,
        variables: vars.iter().map(|v| (*v).to_owned()).collect(),
        max_variable_len: 64,
        max_lengths: Default::default(),
        approved: true,
    }
}

fn templates() -> Vec<TemplateConfig> {
    vec![
        template(
            "welcome",
            ChannelId::Email,
            Some("Welcome, {{ name }}"),
            "Hello {{ name }}, your code is {{ code }}.\n",
            &["name", "code", "unused"],
        ),
        TemplateConfig {
            html: true,
            ..template(
                "report",
                ChannelId::Email,
                Some("Report for {{ name }}"),
                "<p>Hello {{ name }}</p>\n",
                &["name"],
            )
        },
        TemplateConfig {
            approved: false,
            ..template(
                "draft",
                ChannelId::Email,
                Some("Draft"),
                "Draft body\n",
                &[],
            )
        },
        TemplateConfig {
            max_variable_len: 8,
            ..template(
                "otp",
                ChannelId::Sms,
                None,
                "Your code is {{ code }}",
                &["code"],
            )
        },
    ]
}

fn grants() -> AgentGrants {
    AgentGrants {
        channels: vec![ChannelId::Email, ChannelId::Sms],
        recipients: vec![
            "bob@example.com".into(),
            "*@corp.test".into(),
            "+14155550100".into(),
        ],
        templates: None,
    }
}

fn secret_file(dir: &Path, name: &str, value: &str) -> SecretSource {
    let path = dir.join(name);
    // A trailing newline, as `echo` would write, is not part of the secret.
    std::fs::write(&path, format!("{value}\n")).expect("write secret");
    SecretSource::File(path)
}

fn smtp_email(dir: &Path, server: &SmtpServer) -> EmailConfig {
    EmailConfig {
        from: "Delta Ops <ops@example.com>".into(),
        cost_tokens: EMAIL_COST,
        rate_limit: RateLimitConfig::default(),
        backend: EmailBackend::Smtp(SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(server.addr().port()),
            tls: SmtpTls::None,
            username: Some(SMTP_USER.into()),
            password: Some(secret_file(dir, "smtp-password", SMTP_PASSWORD)),
            timeout_ms: 5_000,
        }),
    }
}

fn twilio_sms(dir: &Path, server: &SmsServer) -> SmsConfig {
    SmsConfig {
        from: "+15005550006".into(),
        cost_tokens: SMS_COST,
        rate_limit: RateLimitConfig::default(),
        backend: SmsBackend::Twilio(TwilioConfig {
            base_url: server.base_url(),
            account_sid: TWILIO_SID.into(),
            auth_token: secret_file(dir, "twilio-token", TWILIO_TOKEN),
            timeout_ms: 5_000,
        }),
    }
}

fn outbox_email(dir: &Path) -> EmailConfig {
    EmailConfig {
        from: "ops@example.com".into(),
        cost_tokens: EMAIL_COST,
        rate_limit: RateLimitConfig::default(),
        backend: EmailBackend::Outbox(OutboxConfig {
            dir: dir.join("outbox"),
        }),
    }
}

fn outbox_sms(dir: &Path) -> SmsConfig {
    SmsConfig {
        from: "+15005550006".into(),
        cost_tokens: SMS_COST,
        rate_limit: RateLimitConfig::default(),
        backend: SmsBackend::Outbox(OutboxConfig {
            dir: dir.join("outbox"),
        }),
    }
}

/// Everything a test needs; servers stay alive as long as it does.
struct Harness {
    messaging: Messaging,
    audit: Arc<MemoryAuditLog>,
    ledger: Arc<TestLedger>,
    smtp: Option<SmtpServer>,
    sms: Option<SmsServer>,
    dir: TempDir,
}

impl Harness {
    /// Email and SMS over the loopback servers, ledger with `budget` tokens.
    async fn servers(budget: u64) -> Self {
        let dir = TempDir::new().expect("tempdir");
        let smtp = SmtpServer::start(SmtpServerConfig::with_credentials(SMTP_USER, SMTP_PASSWORD))
            .await
            .expect("smtp server");
        let sms = SmsServer::start(TWILIO_SID, TWILIO_TOKEN)
            .await
            .expect("sms server");
        let config = MessagingConfig {
            email: Some(smtp_email(dir.path(), &smtp)),
            sms: Some(twilio_sms(dir.path(), &sms)),
            templates: templates(),
        };
        let mut h = Self::build(config, dir, budget);
        h.smtp = Some(smtp);
        h.sms = Some(sms);
        h
    }

    /// Both channels into the file outbox.
    fn outbox(budget: u64) -> Self {
        let dir = TempDir::new().expect("tempdir");
        let config = MessagingConfig {
            email: Some(outbox_email(dir.path())),
            sms: Some(outbox_sms(dir.path())),
            templates: templates(),
        };
        Self::build(config, dir, budget)
    }

    fn build(config: MessagingConfig, dir: TempDir, budget: u64) -> Self {
        let audit = Arc::new(MemoryAuditLog::new());
        let ledger = TestLedger::with("agent-1", budget);
        let messaging = Messaging::new(
            &config,
            Arc::clone(&audit) as Arc<dyn AuditLog>,
            Some(Arc::clone(&ledger) as Arc<dyn BudgetLedger>),
        )
        .expect("valid config");
        Self {
            messaging,
            audit,
            ledger,
            smtp: None,
            sms: None,
            dir,
        }
    }

    fn smtp(&self) -> &SmtpServer {
        self.smtp.as_ref().expect("smtp server")
    }

    fn sms(&self) -> &SmsServer {
        self.sms.as_ref().expect("sms server")
    }

    async fn send(
        &self,
        request: SendRequest,
    ) -> Result<delta_host_api::messaging::Receipt, SendError> {
        self.messaging
            .messenger(grants())
            .send(&ctx("agent-1"), request)
            .await
    }

    fn last_audit(&self) -> AuditRecord {
        self.audit
            .records()
            .last()
            .cloned()
            .expect("an audit record")
    }

    fn outbox_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("outbox"))
            .expect("outbox dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
    }
}

fn request(
    channel: Channel,
    template: &str,
    recipient: &str,
    vars: &[(&str, &str)],
) -> SendRequest {
    SendRequest {
        channel,
        template_id: template.into(),
        recipient: recipient.into(),
        variables: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn welcome(recipient: &str, name: &str) -> SendRequest {
    request(
        Channel::Email,
        "welcome",
        recipient,
        &[("name", name), ("code", "42")],
    )
}

fn otp(recipient: &str, code: &str) -> SendRequest {
    request(Channel::Sms, "otp", recipient, &[("code", code)])
}

/// `send` refused with `expected`, recorded as refused with `reason` and
/// `detail`, nothing charged, nothing delivered.
async fn assert_refused(
    h: &Harness,
    req: SendRequest,
    expected: SendError,
    reason: &str,
    detail: Option<&str>,
) {
    let before = h.audit.records().len();
    let got = h.send(req.clone()).await;
    assert_eq!(got, Err(expected), "request {req:?}");
    let records = h.audit.records();
    assert_eq!(records.len(), before + 1, "one audit record per attempt");
    let rec = h.last_audit();
    assert_eq!(rec.status, AuditStatus::Refused);
    assert_eq!(rec.reason.as_deref(), Some(reason));
    assert_eq!(rec.detail.as_deref(), detail);
    assert_eq!(rec.tokens_charged, 0);
    assert_eq!(rec.provider_message_id, None);
    assert_eq!(rec.template_id, req.template_id);
    assert_eq!(rec.recipient, req.recipient);
    assert_eq!(h.ledger.account("agent-1").spent, 0);
    assert_eq!(h.ledger.open_reservations(), 0);
    if let Some(s) = &h.smtp {
        assert!(s.messages().is_empty(), "nothing delivered by SMTP");
    }
    if let Some(s) = &h.sms {
        assert!(s.requests().is_empty(), "nothing delivered by SMS");
    }
}

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
