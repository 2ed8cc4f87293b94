//! Native (non-wasm) tests of the SDK's public API: the same code paths the
//! exports use, with the capabilities behaving as "not configured".

use delta_sdk::budget::{self, BudgetError};
use delta_sdk::llm::{self, CompletionRequest, LlmError};
use delta_sdk::messaging::{self, SendError, SendRequest};
use delta_sdk::prelude::*;
use delta_sdk::{Shortfall, run_agent, run_verifier};

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

struct Hello;

impl Agent for Hello {
    type Input = Input;
    type Output = Greeting;

    fn run(ctx: &Context, input: Input) -> Result<Greeting, AgentError> {
        info!("greeting {} in run {}", input.name, ctx.run_id());
        Ok(Greeting {
            greeting: format!("Hello, {}!", input.name),
        })
    }
}

struct UsesLlm;

impl Agent for UsesLlm {
    type Input = serde_json::Value;
    type Output = String;

    fn run(_ctx: &Context, _input: serde_json::Value) -> Result<String, AgentError> {
        let completion = CompletionRequest::new("m").user("hi").complete()?;
        Ok(completion.text)
    }
}

fn ctx() -> Context {
    Context::new("run-1", "agent-1", "tenant-1", 2_500)
}

#[test]
fn context_accessors() {
    let ctx = ctx();
    assert_eq!(ctx.run_id(), "run-1");
    assert_eq!(ctx.agent_id(), "agent-1");
    assert_eq!(ctx.tenant_id(), "tenant-1");
    assert_eq!(ctx.deadline_ms(), 2_500);
    assert_eq!(ctx.deadline(), std::time::Duration::from_millis(2_500));
}

#[test]
fn agent_round_trip_and_invalid_input() {
    let out = run_agent::<Hello>(&ctx(), r#"{"name":"Ada"}"#);
    assert_eq!(out.as_deref(), Ok(r#"{"greeting":"Hello, Ada!"}"#));

    for bad in ["", "{}", "not json", r#"{"name": 3}"#] {
        let err = run_agent::<Hello>(&ctx(), bad).expect_err(bad);
        assert_eq!(err.code, "invalid-input", "{bad}");
        assert!(!err.retryable);
        assert!(!err.message.is_empty());
    }
}

#[test]
fn capability_errors_convert_with_question_mark() {
    let err = run_agent::<UsesLlm>(&ctx(), "null").expect_err("not configured off-wasm");
    assert_eq!(err.code, "llm-not-configured");
    assert!(!err.retryable);
}

#[test]
fn capabilities_are_not_configured_off_wasm() {
    assert_eq!(
        llm::complete(CompletionRequest::new("m").user("x")),
        Err(LlmError::NotConfigured)
    );
    assert_eq!(
        messaging::send(SendRequest::sms("t", "+15550100").var("a", "b")),
        Err(SendError::NotConfigured)
    );
    assert_eq!(budget::remaining(), Err(BudgetError::NotConfigured));
    assert_eq!(budget::request(1, "r"), Err(BudgetError::NotConfigured));
    assert_eq!(budget::poll_request("id"), Err(BudgetError::NotConfigured));
}

#[test]
fn error_codes_and_retryability() {
    let shortfall = Shortfall {
        needed: 10,
        available: 3,
    };
    let cases: Vec<(AgentError, &str, bool)> = vec![
        (LlmError::NotConfigured.into(), "llm-not-configured", false),
        (
            LlmError::ModelNotAllowed("big".into()).into(),
            "llm-model-not-allowed",
            false,
        ),
        (
            LlmError::BudgetExceeded(shortfall).into(),
            "llm-budget-exceeded",
            false,
        ),
        (
            LlmError::InvalidRequest("empty".into()).into(),
            "llm-invalid-request",
            false,
        ),
        (
            LlmError::RateLimited { retry_after_ms: 5 }.into(),
            "llm-rate-limited",
            true,
        ),
        (
            LlmError::Unavailable("down".into()).into(),
            "llm-unavailable",
            true,
        ),
        (
            SendError::TemplateNotFound.into(),
            "messaging-template-not-found",
            false,
        ),
        (
            SendError::VariableMissing("name".into()).into(),
            "messaging-variable-missing",
            false,
        ),
        (
            SendError::RateLimited { retry_after_ms: 1 }.into(),
            "messaging-rate-limited",
            true,
        ),
        (
            SendError::DeliveryFailed("x".into()).into(),
            "messaging-delivery-failed",
            true,
        ),
        (BudgetError::NoParent.into(), "budget-no-parent", false),
        (
            BudgetError::InvalidAmount { limit: 100 }.into(),
            "budget-invalid-amount",
            false,
        ),
    ];
    for (err, code, retryable) in cases {
        assert_eq!(err.code, code);
        assert_eq!(err.retryable, retryable, "{code}");
        assert!(!err.message.is_empty());
    }
    assert_eq!(
        LlmError::BudgetExceeded(shortfall).to_string(),
        "token budget exceeded: needed 10 tokens, 3 available"
    );
    assert_eq!(
        BudgetError::InvalidAmount { limit: 100 }.to_string(),
        "amount is zero or over the per-request limit of 100"
    );
}

#[test]
fn builders() {
    let request = CompletionRequest::new("m")
        .system("s")
        .user("u")
        .assistant("a")
        .max_tokens(7)
        .temperature(0.5)
        .stop("END");
    assert_eq!(request.messages.len(), 3);
    assert_eq!(request.messages[2].role, llm::Role::Assistant);
    assert_eq!(request.max_tokens, 7);
    assert_eq!(request.temperature, Some(0.5));
    assert_eq!(request.stop, vec!["END".to_owned()]);
    assert_eq!(
        CompletionRequest::new("m").max_tokens,
        CompletionRequest::DEFAULT_MAX_TOKENS
    );

    let message = SendRequest::email("welcome", "a@example.com").var("name", "Ada");
    assert_eq!(message.channel, messaging::Channel::Email);
    assert_eq!(message.variables, vec![("name".into(), "Ada".into())]);
}

struct Equal;

impl Verifier for Equal {
    type Spec = serde_json::Value;
    type Submission = serde_json::Value;

    fn verify(spec: serde_json::Value, submission: serde_json::Value) -> Verdict {
        if spec == submission {
            Verdict::pass("equal")
        } else {
            Verdict::fail("different")
        }
    }
}

#[test]
fn verifier_paths() {
    assert_eq!(
        run_verifier::<Equal>(r#"{"a":1}"#, r#"{ "a": 1 }"#),
        Verdict::pass("equal")
    );
    assert!(!run_verifier::<Equal>("1", "2").passed);
    let v = run_verifier::<Equal>("{", "1");
    assert!(!v.passed && v.score_milli == 0);
    assert!(v.reasons[0].starts_with("invalid spec: "), "{v:?}");
    assert_eq!(Verdict::scored(5_000, true).score_milli, 1000);
}

#[test]
fn logging_off_wasm_goes_to_stderr_without_panicking() {
    delta_sdk::log::info("plain");
    trace!("t {}", 1);
    debug!("d");
    warn!("w {:?}", (1, 2));
    error!("e");
    delta_sdk::log::write(delta_sdk::log::Level::Warn, "direct");
    assert_eq!(delta_sdk::log::Level::Info.to_string(), "info");
}
