//! The in-test ledger and the set-up every module shares.

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

pub const SMTP_USER: &str = "relay-user";
pub const SMTP_PASSWORD: &str = "s3cret-smtp-password";
pub const TWILIO_SID: &str = "AC0123456789abcdef";
pub const TWILIO_TOKEN: &str = "s3cret-twilio-token";
pub const EMAIL_COST: u64 = 10;
pub const SMS_COST: u64 = 25;

// ---------------------------------------------------------------- ledger

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    pub allocated: u64,
    pub spent: u64,
    pub reserved: u64,
}

/// A small in-memory ledger (the real one lives in `delta-ledger`).
#[derive(Default)]
pub struct TestLedger {
    pub state: Mutex<LedgerState>,
}

/// Accounts by agent, open reservations by id, last reservation number.
pub type LedgerState = (HashMap<String, Account>, HashMap<String, Reservation>, u64);

impl TestLedger {
    pub fn with(agent: &str, allocated: u64) -> Arc<Self> {
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

    pub fn account(&self, agent: &str) -> Account {
        self.state.lock().expect("lock").0[agent]
    }

    pub fn open_reservations(&self) -> usize {
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

pub fn ctx(agent: &str) -> CallContext {
    CallContext {
        tenant_id: "tenant-1".into(),
        agent_id: agent.into(),
        run_id: "run-1".into(),
    }
}

pub fn template(
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

pub fn templates() -> Vec<TemplateConfig> {
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

pub fn grants() -> AgentGrants {
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

pub fn secret_file(dir: &Path, name: &str, value: &str) -> SecretSource {
    let path = dir.join(name);
    // A trailing newline, as `echo` would write, is not part of the secret.
    std::fs::write(&path, format!("{value}\n")).expect("write secret");
    SecretSource::File(path)
}

pub fn smtp_email(dir: &Path, server: &SmtpServer) -> EmailConfig {
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

pub fn twilio_sms(dir: &Path, server: &SmsServer) -> SmsConfig {
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

pub fn outbox_email(dir: &Path) -> EmailConfig {
    EmailConfig {
        from: "ops@example.com".into(),
        cost_tokens: EMAIL_COST,
        rate_limit: RateLimitConfig::default(),
        backend: EmailBackend::Outbox(OutboxConfig {
            dir: dir.join("outbox"),
        }),
    }
}

pub fn outbox_sms(dir: &Path) -> SmsConfig {
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
pub struct Harness {
    pub messaging: Messaging,
    pub audit: Arc<MemoryAuditLog>,
    pub ledger: Arc<TestLedger>,
    pub smtp: Option<SmtpServer>,
    pub sms: Option<SmsServer>,
    pub dir: TempDir,
}

impl Harness {
    /// Email and SMS over the loopback servers, ledger with `budget` tokens.
    pub async fn servers(budget: u64) -> Self {
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
    pub fn outbox(budget: u64) -> Self {
        let dir = TempDir::new().expect("tempdir");
        let config = MessagingConfig {
            email: Some(outbox_email(dir.path())),
            sms: Some(outbox_sms(dir.path())),
            templates: templates(),
        };
        Self::build(config, dir, budget)
    }

    pub fn build(config: MessagingConfig, dir: TempDir, budget: u64) -> Self {
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

    pub fn smtp(&self) -> &SmtpServer {
        self.smtp.as_ref().expect("smtp server")
    }

    pub fn sms(&self) -> &SmsServer {
        self.sms.as_ref().expect("sms server")
    }

    pub async fn send(
        &self,
        request: SendRequest,
    ) -> Result<delta_host_api::messaging::Receipt, SendError> {
        self.messaging
            .messenger(grants())
            .send(&ctx("agent-1"), request)
            .await
    }

    pub fn last_audit(&self) -> AuditRecord {
        self.audit
            .records()
            .last()
            .cloned()
            .expect("an audit record")
    }

    pub fn outbox_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("outbox"))
            .expect("outbox dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
    }
}

pub fn request(
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

pub fn welcome(recipient: &str, name: &str) -> SendRequest {
    request(
        Channel::Email,
        "welcome",
        recipient,
        &[("name", name), ("code", "42")],
    )
}

pub fn otp(recipient: &str, code: &str) -> SendRequest {
    request(Channel::Sms, "otp", recipient, &[("code", code)])
}

/// `send` refused with `expected`, recorded as refused with `reason` and
/// `detail`, nothing charged, nothing delivered.
pub async fn assert_refused(
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
