//! Seed 000's three bots end to end through `delta run --config`: real SMTP,
//! a Twilio-compatible SMS API and an OpenAI-compatible LLM provider on
//! loopback, and the SQLite token ledger.

use std::path::Path;
use std::process::Output;

use delta_guest_artifacts as guests;
use delta_test_servers::llm::{Reply, ScriptedLlm};
use delta_test_servers::sms::SmsServer;
use delta_test_servers::smtp::{SmtpServer, SmtpServerConfig};

async fn delta(config: &Path, component: &str, input: &str) -> Output {
    let cache = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-cache");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_delta"))
        .args(["run", "--json", "--config"])
        .arg(config)
        .arg(component)
        .args(["--input", input])
        .env("DELTA_CACHE_DIR", cache)
        .env("DELTA_TEST_LLM_KEY", "sk-test-secret")
        .output()
        .await
        .expect("run delta")
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn output(out: &Output) -> serde_json::Value {
    let report = report(out);
    assert_eq!(report["outcome"]["status"], "completed", "{report}");
    serde_json::from_str(report["outcome"]["output"].as_str().expect("output")).expect("json")
}

const LEDGER: &str = r#"
[budget]
database = "ledger.db"
[[budget.users]]
id = "dev"
tier = "developer"
monthly_allocation = 10000
[[budget.agents]]
id = "main"
user = "dev"
budget = 3000
auto_approve_limit = 500
max_request = 1000
[[budget.agents]]
id = "bot"
parent = "main"
budget = 100
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_bot_sends_through_smtp_and_pays_from_its_budget() {
    let smtp = SmtpServer::start(SmtpServerConfig::with_credentials("delta", "smtp-pass"))
        .await
        .expect("smtp");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("smtp-password"), "smtp-pass\n").expect("secret");
    let config = dir.path().join("delta.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "bot"
channels = ["email"]
recipients = ["*@example.com"]

[messaging]
audit_log = "messages.jsonl"
[messaging.email]
from = "Delta <noreply@delta.test>"
cost_tokens = 10
[messaging.email.backend]
kind = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "delta"
password = {{ file = "smtp-password" }}
[[messaging.templates]]
id = "welcome"
channel = "email"
subject = "Welcome, {{{{ name }}}}"
body = "Hello {{{{ name }}}}, welcome aboard."
variables = ["name"]
approved = true
{LEDGER}"#,
            port = smtp.addr().port()
        ),
    )
    .expect("config");

    let out = delta(
        &config,
        guests::EMAIL_BOT,
        r#"{"to":"ada@example.com","name":"Ada"}"#,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = output(&out);
    assert_eq!(sent["tokens_charged"], 10);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, vec!["ada@example.com".to_owned()]);
    assert_eq!(mails[0].header("Subject").as_deref(), Some("Welcome, Ada"));
    assert!(mails[0].body().contains("Hello Ada, welcome aboard."));
    assert!(mails[0].auth.is_some(), "SMTP AUTH was used");

    // A recipient outside the grant is refused, audited and not charged.
    let out = delta(
        &config,
        guests::EMAIL_BOT,
        r#"{"to":"mallory@evil.test","name":"M"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        report(&out)["outcome"]["code"],
        "messaging-recipient-not-allowed"
    );
    assert_eq!(smtp.messages().len(), 1, "nothing more was sent");
    let audit = std::fs::read_to_string(dir.path().join("messages.jsonl")).expect("audit");
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line"))
        .collect();
    assert_eq!(lines.len(), 2, "{audit}");
    assert_eq!(lines[0]["status"], "sent");
    assert_eq!(lines[1]["status"], "refused");
    assert_eq!(lines[1]["reason"], "recipient-not-allowed");
    assert!(!audit.contains("smtp-pass"), "no secret in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_bot_sends_through_a_twilio_compatible_api() {
    let sms = SmsServer::start("AC123", "twilio-token")
        .await
        .expect("sms");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("twilio-token"), "twilio-token").expect("secret");
    let config = dir.path().join("delta.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "bot"
channels = ["sms"]
recipients = ["+15555550100"]

[messaging.sms]
from = "+15005550006"
[messaging.sms.backend]
kind = "twilio"
base_url = "{base}"
account_sid = "AC123"
auth_token = {{ file = "twilio-token" }}
[[messaging.templates]]
id = "verify-code"
channel = "sms"
body = "Your code is {{{{ code }}}}"
variables = ["code"]
approved = true
"#,
            base = sms.base_url()
        ),
    )
    .expect("config");
    let out = delta(
        &config,
        guests::SMS_BOT,
        r#"{"to":"+15555550100","code":"424242"}"#,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = output(&out);
    let requests = sms.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].field("To"), Some("+15555550100"));
    assert_eq!(requests[0].field("From"), Some("+15005550006"));
    assert_eq!(requests[0].field("Body"), Some("Your code is 424242"));
    assert!(sent["message_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_task_bot_answers_within_budget_and_asks_its_parent_for_more() {
    task_bot(guests::LLM_TASK_BOT).await;
}

/// `examples/js/task-bot.js`, the same bot in JavaScript: the same
/// scenario, then an answer mailed through the file outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_task_bot_behaves_like_the_rust_one_and_mails_its_answer() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/js/task-bot.js");
    let (dir, config, llm) = task_bot(script).await;
    llm.push(Reply::ok("Hi.", 10, 2));
    let out = delta(
        &config,
        script,
        r#"{"task":"Say hi.","max_tokens":20,"notify":"ada@example.com"}"#,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = output(&out);
    assert!(
        sent["message_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{sent}"
    );
    let mails = std::fs::read_dir(dir.path().join("outbox"))
        .expect("outbox")
        .count();
    assert_eq!(mails, 1);
    // A recipient outside the grant is the Rust bot's error code.
    llm.push(Reply::ok("Hi.", 10, 2));
    let out = delta(
        &config,
        script,
        r#"{"task":"Say hi.","max_tokens":20,"notify":"eve@elsewhere.test"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        report(&out)["outcome"]["code"],
        "messaging-recipient-not-allowed"
    );
}

/// The task-bot scenario for `component` (a component or a script); returns
/// its directory, config and LLM server for more.
async fn task_bot(component: &str) -> (tempfile::TempDir, std::path::PathBuf, ScriptedLlm) {
    let llm = ScriptedLlm::start().await.expect("llm");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("delta.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "bot"
models = ["default"]
channels = ["email"]
recipients = ["*@example.com"]

[messaging]
[messaging.email]
from = "Delta <noreply@example.com>"
cost_tokens = 0
backend = {{ kind = "outbox", dir = "{outbox}" }}
[[messaging.templates]]
id = "welcome"
channel = "email"
subject = "Your answer"
body = "{{{{ name }}}}"
variables = ["name"]
approved = true

[llm]
aliases = {{ default = "test-model" }}
[[llm.providers]]
name = "local"
kind = "openai"
base_url = "{base}"
api_key_env = "DELTA_TEST_LLM_KEY"
models = ["test-model"]
{LEDGER}"#,
            base = llm.base_url(),
            outbox = dir.path().join("outbox").display(),
        ),
    )
    .expect("config");

    llm.push(Reply::ok("Forty-two.", 20, 5));
    let out = delta(
        &config,
        component,
        r#"{"task":"What is the answer?","max_tokens":40}"#,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = output(&out);
    assert_eq!(answer["answer"], "Forty-two.");
    assert_eq!(answer["model"], "test-model");
    assert_eq!(
        answer["remaining"],
        100 - 25,
        "settled to the reported usage"
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk-test-secret")
    );

    // More than the bot's budget: nothing is sent; the bot asks its parent,
    // within the parent's auto-approve limit, so the request is approved.
    let out = delta(
        &config,
        component,
        r#"{"task":"Write an essay.","max_tokens":400}"#,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = report(&out);
    assert_eq!(failed["outcome"]["code"], "budget-requested", "{failed}");
    assert!(
        failed["outcome"]["message"]
            .as_str()
            .is_some_and(|m| m.to_lowercase().contains("approved")),
        "{failed}"
    );
    assert_eq!(llm.requests().len(), 1, "no request sent without budget");

    // The approved tokens are in the budget now: the same task succeeds.
    llm.push(Reply::ok("An essay.", 30, 300));
    let out = delta(
        &config,
        component,
        r#"{"task":"Write an essay.","max_tokens":400}"#,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(output(&out)["answer"], "An essay.");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("sk-test-secret"),
        "the key never reaches output"
    );
    (dir, config, llm)
}
