//! End-to-end tests of the gateway over real HTTP against the scripted
//! loopback provider (`delta_test_servers::llm`), with a small in-test
//! ledger. Timing assertions are one-sided and loose (shared CI cores).

// Panicking on an unexpected error is how a test fails.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use delta_host_api::budget::{Balance, BudgetError, TokenRequest};
use delta_host_api::llm::{CompletionRequest, FinishReason, LlmError, Message, Role};
use delta_host_api::{BudgetLedger, CallContext, LedgerError, LlmGateway, Reservation, Settlement};
use delta_llm::{
    AgentGateway, ConfigError, LlmConfig, ProviderConfig, ProviderKind, Providers,
    estimate_prompt_tokens,
};
use delta_test_servers::llm::{Finish, Reply, ScriptedLlm};
use serde_json::json;

// ---------------------------------------------------------------- ledger

/// Atomic (one Mutex) ledger for one agent, counting every operation.
#[derive(Default)]
struct TestLedger {
    state: Mutex<LedgerState>,
}

#[derive(Default, Debug)]
struct LedgerState {
    allocated: u64,
    spent: u64,
    reserved: u64,
    open: HashMap<String, u64>,
    next: u64,
    reserves: u64,
}

impl TestLedger {
    fn new(allocated: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(LedgerState {
                allocated,
                ..LedgerState::default()
            }),
        })
    }

    /// `(spent, reserved, reserve calls)`.
    fn snapshot(&self) -> (u64, u64, u64) {
        let s = self.state.lock().unwrap();
        (s.spent, s.reserved, s.reserves)
    }

    fn as_dyn(self: &Arc<Self>) -> Option<Arc<dyn BudgetLedger>> {
        Some(Arc::clone(self) as Arc<dyn BudgetLedger>)
    }
}

#[async_trait]
impl BudgetLedger for TestLedger {
    async fn reserve(
        &self,
        ctx: &CallContext,
        amount: u64,
        purpose: &str,
    ) -> Result<Reservation, LedgerError> {
        assert!(purpose.starts_with("llm:"), "{purpose}");
        let mut s = self.state.lock().unwrap();
        s.reserves += 1;
        let available = s.allocated - s.spent - s.reserved;
        if amount > available {
            return Err(LedgerError::Insufficient {
                needed: amount,
                available,
            });
        }
        s.reserved += amount;
        s.next += 1;
        let id = format!("r{}", s.next);
        s.open.insert(id.clone(), amount);
        Ok(Reservation {
            id,
            agent_id: ctx.agent_id.to_string(),
            amount,
        })
    }

    async fn settle(&self, r: &Reservation, used: u64) -> Result<Settlement, LedgerError> {
        let mut s = self.state.lock().unwrap();
        let amount = s
            .open
            .remove(&r.id)
            .ok_or_else(|| LedgerError::UnknownReservation(r.id.clone()))?;
        s.reserved -= amount;
        let charged = used.min(s.allocated - s.spent - s.reserved);
        s.spent += charged;
        Ok(Settlement {
            charged,
            uncovered: used - charged,
        })
    }

    async fn release(&self, r: &Reservation) -> Result<(), LedgerError> {
        let mut s = self.state.lock().unwrap();
        let amount = s
            .open
            .remove(&r.id)
            .ok_or_else(|| LedgerError::UnknownReservation(r.id.clone()))?;
        s.reserved -= amount;
        Ok(())
    }

    async fn remaining(&self, _: &CallContext) -> Result<Balance, BudgetError> {
        let s = self.state.lock().unwrap();
        Ok(Balance {
            allocated: s.allocated,
            spent: s.spent,
            reserved: s.reserved,
            available: s.allocated - s.spent - s.reserved,
        })
    }

    async fn request(
        &self,
        _: &CallContext,
        _: u64,
        _: String,
    ) -> Result<TokenRequest, BudgetError> {
        Err(BudgetError::NoParent)
    }

    async fn poll_request(&self, _: &CallContext, _: String) -> Result<TokenRequest, BudgetError> {
        Err(BudgetError::UnknownRequest)
    }
}

// ---------------------------------------------------------------- helpers

const KEY: &str = "sk-test-SECRET-0123456789";

fn ctx() -> CallContext {
    CallContext {
        tenant_id: "t1".into(),
        agent_id: "a1".into(),
        run_id: "run1".into(),
    }
}

fn msg(role: Role, content: &str) -> Message {
    Message {
        role,
        content: content.into(),
    }
}

fn request(model: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.into(),
        messages: vec![msg(Role::User, "hello there")],
        max_tokens: 100,
        temperature: None,
        stop: vec![],
    }
}

/// What a call with `request(model)` reserves.
fn reservation_of(req: &CompletionRequest) -> u64 {
    u64::from(req.max_tokens) + estimate_prompt_tokens(&req.messages)
}

/// A provider with fast retries, a 2 s timeout and the test key in `KEY_VAR`.
fn provider(
    name: &str,
    kind: ProviderKind,
    server: &ScriptedLlm,
    models: &[&str],
) -> ProviderConfig {
    let mut p = ProviderConfig::new(name, kind, server.base_url(), models.iter().copied());
    p.api_key_env = Some("KEY_VAR".into());
    p.timeout_ms = 2_000;
    p.retry_base_ms = 10;
    p.retry_max_ms = 2_000;
    p
}

fn providers(providers: Vec<ProviderConfig>, aliases: &[(&str, &str)]) -> Arc<Providers> {
    let config = LlmConfig {
        providers,
        aliases: aliases
            .iter()
            .map(|(a, m)| ((*a).to_owned(), (*m).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    };
    Arc::new(
        Providers::with_env(&config, |var| (var == "KEY_VAR").then(|| KEY.to_owned())).unwrap(),
    )
}

fn gateway(p: &Arc<Providers>, grants: &[&str], ledger: &Arc<TestLedger>) -> AgentGateway {
    p.for_agent(grants.iter().copied(), ledger.as_dyn())
}

fn unavailable(err: LlmError) -> String {
    match err {
        LlmError::Unavailable(summary) => summary,
        other => panic!("expected unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------- protocols

#[tokio::test]
async fn anthropic_request_shape_and_response() {
    let server = ScriptedLlm::start().await.unwrap();
    server.push(Reply::ok("Hi!", 21, 7));
    server.push(Reply::ok("cut", 5, 100).with_finish(Finish::Length));
    let p = providers(
        vec![provider(
            "anth",
            ProviderKind::Anthropic,
            &server,
            &["claude-x"],
        )],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["claude-x"], &ledger);

    let req = CompletionRequest {
        model: "claude-x".into(),
        messages: vec![
            msg(Role::System, "be brief"),
            msg(Role::User, "hello"),
            msg(Role::Assistant, "hi"),
            msg(Role::System, "and polite"),
            msg(Role::User, "how are you?"),
        ],
        max_tokens: 64,
        temperature: Some(0.5),
        stop: vec!["END".into()],
    };
    let out = gw.complete(&ctx(), req).await.unwrap();
    assert_eq!(out.text, "Hi!");
    assert_eq!(out.model, "claude-x");
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!((out.usage.input_tokens, out.usage.output_tokens), (21, 7));

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.body,
        json!({
            "model": "claude-x",
            "max_tokens": 64,
            "system": "be brief\n\nand polite",
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "how are you?"},
            ],
            "temperature": 0.5,
            "stop_sequences": ["END"],
        })
    );
    assert_eq!(ledger.snapshot(), (28, 0, 1));

    // Optional fields are left out; max_tokens maps to `length`.
    let out = gw.complete(&ctx(), request("claude-x")).await.unwrap();
    assert_eq!(out.finish_reason, FinishReason::Length);
    let body = &server.requests()[1].body;
    assert_eq!(
        body,
        &json!({"model": "claude-x", "max_tokens": 100,
                "messages": [{"role": "user", "content": "hello there"}]})
    );
    assert_eq!(ledger.snapshot(), (28 + 105, 0, 2));
}

#[tokio::test]
async fn openai_request_shape_and_response() {
    let server = ScriptedLlm::start().await.unwrap();
    server.push(Reply::ok("Bonjour", 30, 2).with_finish(Finish::Length));
    server.push(Reply::ok("x", 1, 1).with_finish(Finish::Other));
    // Key from a file, with the trailing newline editors add.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut cfg = ProviderConfig::new("oai", ProviderKind::Openai, server.base_url(), ["gpt-x"]);
    cfg.api_key_file = Some(key_file);
    let config = LlmConfig {
        providers: vec![cfg],
        aliases: BTreeMap::new(),
    };
    let p = Arc::new(Providers::new(&config).unwrap());
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["gpt-x"], &ledger);

    let req = CompletionRequest {
        model: "gpt-x".into(),
        messages: vec![msg(Role::System, "translate"), msg(Role::User, "hello")],
        max_tokens: 16,
        temperature: Some(0.7),
        stop: vec!["\n".into(), "###".into()],
    };
    let out = gw.complete(&ctx(), req).await.unwrap();
    assert_eq!(out.text, "Bonjour");
    assert_eq!(out.model, "gpt-x");
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!((out.usage.input_tokens, out.usage.output_tokens), (30, 2));

    let r = &server.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.header("x-api-key"), None);
    assert_eq!(r.header("anthropic-version"), None);
    assert_eq!(
        r.body,
        json!({
            "model": "gpt-x",
            "max_tokens": 16,
            "messages": [
                {"role": "system", "content": "translate"},
                {"role": "user", "content": "hello"},
            ],
            "temperature": 0.7,
            "stop": ["\n", "###"],
        })
    );
    assert_eq!(ledger.snapshot(), (32, 0, 1));

    let out = gw.complete(&ctx(), request("gpt-x")).await.unwrap();
    assert_eq!(out.finish_reason, FinishReason::Other);
}

#[tokio::test]
async fn keyless_local_provider_sends_no_auth_header() {
    let server = ScriptedLlm::start().await.unwrap();
    let cfg = ProviderConfig::new(
        "ollama",
        ProviderKind::Openai,
        server.base_url(),
        ["llama3"],
    );
    let p = Arc::new(
        Providers::new(&LlmConfig {
            providers: vec![cfg],
            aliases: BTreeMap::new(),
        })
        .unwrap(),
    );
    // Without a ledger the call is not metered.
    let gw = p.for_agent(["llama3"], None);
    let out = gw.complete(&ctx(), request("llama3")).await.unwrap();
    assert_eq!(out.text, "ok");
    assert_eq!(server.requests()[0].header("authorization"), None);
}

// ---------------------------------------------------------------- grants, aliases, validation, budget

#[tokio::test]
async fn model_not_granted_sends_nothing() {
    let server = ScriptedLlm::start().await.unwrap();
    let p = providers(
        vec![provider("p", ProviderKind::Openai, &server, &["a", "b"])],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["a"], &ledger);
    let err = gw.complete(&ctx(), request("b")).await.unwrap_err();
    assert_eq!(err, LlmError::ModelNotAllowed("b".into()));
    assert_eq!(server.request_count(), 0);
    assert_eq!(ledger.snapshot(), (0, 0, 0));
}

#[tokio::test]
async fn aliases_resolve_and_grants_apply_to_name_or_model() {
    let server = ScriptedLlm::start().await.unwrap();
    let p = providers(
        vec![provider(
            "p",
            ProviderKind::Anthropic,
            &server,
            &["claude-real"],
        )],
        &[("fast", "claude-real")],
    );
    let ledger = TestLedger::new(10_000);

    // Granted the alias: the alias works, the model is sent, the concrete
    // model is reported.
    let gw = gateway(&p, &["fast"], &ledger);
    let out = gw.complete(&ctx(), request("fast")).await.unwrap();
    assert_eq!(out.model, "claude-real");
    assert_eq!(server.requests()[0].body["model"], "claude-real");
    // ... but not the model by its own name.
    let err = gw
        .complete(&ctx(), request("claude-real"))
        .await
        .unwrap_err();
    assert_eq!(err, LlmError::ModelNotAllowed("claude-real".into()));

    // Granted the model: any alias of it works too.
    let gw = gateway(&p, &["claude-real"], &ledger);
    assert_eq!(
        gw.complete(&ctx(), request("fast")).await.unwrap().model,
        "claude-real"
    );
    assert_eq!(server.request_count(), 2);
    assert_eq!(ledger.snapshot(), (4, 0, 2));
}

#[tokio::test]
async fn invalid_requests_are_refused_before_anything() {
    let server = ScriptedLlm::start().await.unwrap();
    let p = providers(
        vec![provider("p", ProviderKind::Openai, &server, &["m"])],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let mut empty = request("m");
    empty.messages.clear();
    let mut zero = request("m");
    zero.max_tokens = 0;
    let mut nan = request("m");
    nan.temperature = Some(f32::NAN);
    for req in [empty, zero, nan] {
        let err = gw.complete(&ctx(), req).await.unwrap_err();
        assert!(matches!(err, LlmError::InvalidRequest(_)), "{err:?}");
    }
    // Granted but served by nobody.
    let gw = gateway(&p, &["nobody-serves-this"], &ledger);
    let err = unavailable(
        gw.complete(&ctx(), request("nobody-serves-this"))
            .await
            .unwrap_err(),
    );
    assert!(err.contains("no configured provider"), "{err}");
    assert_eq!(server.request_count(), 0);
    assert_eq!(ledger.snapshot(), (0, 0, 0));
}

#[tokio::test]
async fn budget_exceeded_sends_nothing() {
    let server = ScriptedLlm::start().await.unwrap();
    let p = providers(
        vec![provider("p", ProviderKind::Anthropic, &server, &["m"])],
        &[],
    );
    let ledger = TestLedger::new(50);
    let gw = gateway(&p, &["m"], &ledger);
    let req = request("m");
    let needed = reservation_of(&req);
    let err = gw.complete(&ctx(), req).await.unwrap_err();
    match err {
        LlmError::BudgetExceeded(s) => assert_eq!((s.needed, s.available), (needed, 50)),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.request_count(), 0);
    assert_eq!(ledger.snapshot(), (0, 0, 1));
}

#[tokio::test]
async fn missing_usage_charges_the_whole_reservation() {
    let server = ScriptedLlm::start().await.unwrap();
    server.push(Reply::ok_without_usage("no usage here"));
    let p = providers(
        vec![provider("p", ProviderKind::Openai, &server, &["m"])],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let req = request("m");
    let reserved = reservation_of(&req);
    let out = gw.complete(&ctx(), req).await.unwrap();
    assert_eq!(out.text, "no usage here");
    assert_eq!(
        u64::from(out.usage.input_tokens) + u64::from(out.usage.output_tokens),
        reserved
    );
    assert_eq!(ledger.snapshot(), (reserved, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_never_overspend() {
    let server = ScriptedLlm::start().await.unwrap();
    // Each call uses 95 tokens and holds ~105 while in flight.
    server.set_fallback(Reply::slow(
        Duration::from_millis(100),
        Reply::ok("ok", 5, 90),
    ));
    let p = providers(
        vec![provider("p", ProviderKind::Openai, &server, &["m"])],
        &[],
    );
    let ledger = TestLedger::new(1_000);
    let gw = Arc::new(gateway(&p, &["m"], &ledger));
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let gw = Arc::clone(&gw);
            tokio::spawn(async move {
                // Stagger a little so later calls see settled budget.
                tokio::time::sleep(Duration::from_millis(i * 10)).await;
                gw.complete(&ctx(), request("m")).await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0u64, 0u64);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(LlmError::BudgetExceeded(s)) => {
                assert!(s.available < s.needed);
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    let (spent, reserved, _) = ledger.snapshot();
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert_eq!(reserved, 0);
    assert_eq!(spent, ok * 95);
    assert!(spent <= 1_000, "overspent: {spent}");
    assert_eq!(
        server.request_count() as u64,
        ok,
        "a refused call reached the provider"
    );
}

#[tokio::test]
async fn dropped_call_finishes_its_reservation() {
    let server = ScriptedLlm::start().await.unwrap();
    server.set_fallback(Reply::slow(Duration::from_secs(5), Reply::ok("late", 1, 1)));
    let p = providers(
        vec![provider("p", ProviderKind::Openai, &server, &["m"])],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let req = request("m");
    let amount = reservation_of(&req);
    // As the run's deadline would: drop the call while the request is out.
    let timed_out =
        tokio::time::timeout(Duration::from_millis(300), gw.complete(&ctx(), req)).await;
    assert!(timed_out.is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    while ledger.snapshot().1 != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The request had been sent: charged in full, nothing left reserved.
    assert_eq!(ledger.snapshot(), (amount, 0, 1));
}

// ---------------------------------------------------------------- retries, fallback, limits

#[tokio::test]
async fn retries_then_succeeds() {
    let server = ScriptedLlm::start().await.unwrap();
    server.push_all([
        Reply::server_error(),
        Reply::status(503, "{}"),
        Reply::ok("third time", 10, 3),
    ]);
    let p = providers(
        vec![provider("p", ProviderKind::Anthropic, &server, &["m"])],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let out = gw.complete(&ctx(), request("m")).await.unwrap();
    assert_eq!(out.text, "third time");
    assert_eq!(server.request_count(), 3);
    assert_eq!(ledger.snapshot(), (13, 0, 1));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = ScriptedLlm::start().await.unwrap();
    server.push_all([
        Reply::rate_limited(Some("1")),
        Reply::ok("after waiting", 1, 1),
    ]);
    let mut cfg = provider("p", ProviderKind::Openai, &server, &["m"]);
    cfg.max_retries = 5;
    let p = providers(vec![cfg], &[]);
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let start = Instant::now();
    let out = gw.complete(&ctx(), request("m")).await.unwrap();
    // Backoff alone would have waited ~10 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.text, "after waiting");
    assert_eq!(server.request_count(), 2);

    // The HTTP-date form too.
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    server.push_all([Reply::rate_limited(Some(&at)), Reply::ok("dated", 1, 1)]);
    let start = Instant::now();
    assert_eq!(
        gw.complete(&ctx(), request("m")).await.unwrap().text,
        "dated"
    );
    // The date has second precision: at least ~1 s remained.
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.request_count(), 4);
    assert_eq!(ledger.snapshot(), (4, 0, 2));
}

#[tokio::test]
async fn rate_limited_everywhere_reports_retry_after() {
    let a = ScriptedLlm::start().await.unwrap();
    let b = ScriptedLlm::start().await.unwrap();
    // Longer than the cap: not waited for, reported to the guest instead.
    a.set_fallback(Reply::rate_limited(Some("30")));
    b.set_fallback(Reply::rate_limited(Some("20")));
    let mut pa = provider("a", ProviderKind::Openai, &a, &["m"]);
    let mut pb = provider("b", ProviderKind::Anthropic, &b, &["m"]);
    pa.max_retries = 5;
    pb.max_retries = 5;
    let p = providers(vec![pa, pb], &[]);
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let start = Instant::now();
    let err = gw.complete(&ctx(), request("m")).await.unwrap_err();
    assert_eq!(err, LlmError::RateLimited(20_000));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    assert_eq!(ledger.snapshot(), (0, 0, 1));

    // Rate limiting mixed with another failure is `unavailable`.
    b.set_fallback(Reply::server_error());
    let err = unavailable(gw.complete(&ctx(), request("m")).await.unwrap_err());
    assert!(
        err.contains("a: rate limited") && err.contains("b: HTTP 500"),
        "{err}"
    );
}

#[tokio::test]
async fn server_error_falls_back_to_the_next_provider() {
    let first = ScriptedLlm::start().await.unwrap();
    let second = ScriptedLlm::start().await.unwrap();
    first.set_fallback(Reply::server_error());
    second.push(Reply::ok("from the second", 3, 4));
    let mut p1 = provider("first", ProviderKind::Anthropic, &first, &["m"]);
    p1.max_retries = 1;
    let p2 = provider("second", ProviderKind::Openai, &second, &["m"]);
    let p = providers(vec![p1, p2], &[]);
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let out = gw.complete(&ctx(), request("m")).await.unwrap();
    assert_eq!(out.text, "from the second");
    assert_eq!((first.request_count(), second.request_count()), (2, 1));
    // Each provider got its own protocol.
    assert_eq!(first.requests()[0].path, "/v1/messages");
    assert_eq!(second.requests()[0].path, "/v1/chat/completions");
    assert_eq!(ledger.snapshot(), (7, 0, 1));
}

#[tokio::test]
async fn slow_provider_times_out_and_falls_back() {
    let slow = ScriptedLlm::start().await.unwrap();
    let fast = ScriptedLlm::start().await.unwrap();
    slow.set_fallback(Reply::slow(
        Duration::from_secs(10),
        Reply::ok("too late", 1, 1),
    ));
    let mut p1 = provider("slow", ProviderKind::Openai, &slow, &["m"]);
    p1.timeout_ms = 300;
    p1.max_retries = 1;
    let p2 = provider("fast", ProviderKind::Openai, &fast, &["m"]);
    let p = providers(vec![p1, p2], &[]);
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let start = Instant::now();
    let out = gw.complete(&ctx(), request("m")).await.unwrap();
    assert_eq!(out.text, "ok");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((slow.request_count(), fast.request_count()), (2, 1));
    assert_eq!(ledger.snapshot(), (2, 0, 1));

    // Alone, the timeout is reported.
    let mut cfg = provider("slow", ProviderKind::Openai, &slow, &["m"]);
    cfg.timeout_ms = 200;
    cfg.max_retries = 0;
    let p = providers(vec![cfg], &[]);
    let gw = gateway(&p, &["m"], &ledger);
    let err = unavailable(gw.complete(&ctx(), request("m")).await.unwrap_err());
    assert!(err.contains("timed out after 200 ms"), "{err}");
    assert_eq!(ledger.snapshot(), (2, 0, 2));
}

#[tokio::test]
async fn malformed_json_is_not_retried_and_released() {
    let server = ScriptedLlm::start().await.unwrap();
    server.set_fallback(Reply::malformed());
    let p = providers(
        vec![provider("p", ProviderKind::Anthropic, &server, &["m"])],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let err = unavailable(gw.complete(&ctx(), request("m")).await.unwrap_err());
    assert!(err.contains("p: malformed response"), "{err}");
    assert_eq!(server.request_count(), 1);
    assert_eq!(ledger.snapshot(), (0, 0, 1));
}

#[tokio::test]
async fn huge_body_with_content_length_is_refused() {
    let server = ScriptedLlm::start().await.unwrap();
    server.push(Reply::huge(1 << 20));
    let mut cfg = provider("p", ProviderKind::Openai, &server, &["m"]);
    cfg.max_response_bytes = 64 * 1024;
    let p = providers(vec![cfg], &[]);
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let err = unavailable(gw.complete(&ctx(), request("m")).await.unwrap_err());
    assert!(err.contains("over 65536 bytes"), "{err}");
    assert_eq!(server.request_count(), 1);
    assert_eq!(ledger.snapshot(), (0, 0, 1));
    // Just under the cap is fine.
    server.push(Reply::huge(32 * 1024));
    assert!(gw.complete(&ctx(), request("m")).await.is_ok());
}

/// A raw HTTP/1.1 server answering one request with an endless chunked
/// body (no `Content-Length`), up to 64 MiB; returns how much it wrote.
async fn endless_chunked_server() -> (String, tokio::task::JoinHandle<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        // The request is small: one read gets the headers (and usually the body).
        let _ = sock.read(&mut buf).await.unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
        let mut written = 0;
        for _ in 0..1024 {
            if sock.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            written += 64 * 1024;
        }
        written
    });
    (url, task)
}

#[tokio::test]
async fn huge_chunked_body_stops_reading_at_the_cap() {
    let (url, server) = endless_chunked_server().await;
    let mut cfg = ProviderConfig::new("raw", ProviderKind::Openai, url, ["m"]);
    cfg.max_response_bytes = 100 * 1024;
    cfg.max_retries = 0;
    cfg.timeout_ms = 10_000;
    let p = Arc::new(
        Providers::new(&LlmConfig {
            providers: vec![cfg],
            aliases: BTreeMap::new(),
        })
        .unwrap(),
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let err = unavailable(gw.complete(&ctx(), request("m")).await.unwrap_err());
    assert!(err.contains("over 102400 bytes"), "{err}");
    drop(gw);
    drop(p); // closes the pooled connection, if any
    let written = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    // Socket buffers hold a few MiB at most; the server gave up long before 64.
    assert!(written < 32 << 20, "server wrote {written} bytes");
    assert_eq!(ledger.snapshot(), (0, 0, 1));
}

#[tokio::test]
async fn circuit_breaker_opens_then_lets_a_probe_through() {
    let server = ScriptedLlm::start().await.unwrap();
    server.set_fallback(Reply::server_error());
    let mut cfg = provider("flaky", ProviderKind::Openai, &server, &["m"]);
    cfg.max_retries = 0;
    cfg.circuit.failure_threshold = 2;
    cfg.circuit.cooldown_ms = 400;
    let p = providers(vec![cfg], &[]);
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);

    for _ in 0..2 {
        let err = unavailable(gw.complete(&ctx(), request("m")).await.unwrap_err());
        assert!(err.contains("flaky: HTTP 500"), "{err}");
    }
    assert_eq!(p.circuit_open("flaky"), Some(true));
    // Open: skipped without a request.
    let err = unavailable(gw.complete(&ctx(), request("m")).await.unwrap_err());
    assert!(err.contains("flaky: circuit open"), "{err}");
    assert_eq!(server.request_count(), 2);

    tokio::time::sleep(Duration::from_millis(500)).await;
    server.set_fallback(Reply::ok("recovered", 1, 1));
    // Half-open: one probe goes through and closes the circuit.
    assert_eq!(
        gw.complete(&ctx(), request("m")).await.unwrap().text,
        "recovered"
    );
    assert_eq!(server.request_count(), 3);
    assert_eq!(p.circuit_open("flaky"), Some(false));
    assert_eq!(ledger.snapshot(), (2, 0, 4));
}

// ---------------------------------------------------------------- secrets and config

#[tokio::test]
async fn key_never_appears_in_errors() {
    let server = ScriptedLlm::start().await.unwrap();
    // Providers that echo the key back in error bodies.
    server.push_all([
        Reply::status(401, format!(r#"{{"error":"invalid key {KEY}"}}"#)),
        Reply::status(500, format!(r#"{{"error":"{KEY}"}}"#)),
    ]);
    let mut cfg = provider("p", ProviderKind::Openai, &server, &["m"]);
    cfg.max_retries = 0;
    let p = providers(
        vec![cfg.clone(), {
            let mut c = cfg;
            c.name = "q".into();
            c
        }],
        &[],
    );
    let ledger = TestLedger::new(10_000);
    let gw = gateway(&p, &["m"], &ledger);
    let err = gw.complete(&ctx(), request("m")).await.unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("p: HTTP 401") && text.contains("q: HTTP 500"),
        "{text}"
    );
    assert!(!text.contains(KEY), "{text}");
    assert!(!format!("{p:?}").contains(KEY));
    assert!(!format!("{gw:?}").contains(KEY));

    // A key that cannot be a header is refused without showing it.
    let mut bad = ProviderConfig::new("bad", ProviderKind::Anthropic, "http://127.0.0.1:1", ["m"]);
    bad.api_key_env = Some("BAD".into());
    let config = LlmConfig {
        providers: vec![bad],
        aliases: BTreeMap::new(),
    };
    let err = Providers::with_env(&config, |_| Some(format!("{KEY}\u{1}x"))).unwrap_err();
    assert!(matches!(err, ConfigError::BadHeader { .. }), "{err}");
    assert!(!err.to_string().contains(KEY));
}

#[test]
fn config_deserialises_with_defaults_and_refuses_unknown_fields() {
    let config: LlmConfig = serde_json::from_value(json!({
        "providers": [
            {"name": "anthropic", "kind": "anthropic", "base_url": "https://api.anthropic.com",
             "api_key_env": "ANTHROPIC_API_KEY", "models": ["claude-x"]},
            {"name": "local", "kind": "openai", "base_url": "http://127.0.0.1:11434",
             "models": ["llama3"], "timeout_ms": 120000, "circuit": {"failure_threshold": 3}}
        ],
        "aliases": {"fast": "llama3"}
    }))
    .unwrap();
    let a = &config.providers[0];
    assert_eq!(a.timeout_ms, 60_000);
    assert_eq!(a.max_retries, 2);
    assert_eq!(a.retry_base_ms, 250);
    assert_eq!(a.retry_max_ms, 10_000);
    assert_eq!(a.max_response_bytes, 4 << 20);
    assert_eq!(a.anthropic_version, "2023-06-01");
    assert_eq!(
        (a.circuit.failure_threshold, a.circuit.cooldown_ms),
        (5, 30_000)
    );
    let l = &config.providers[1];
    assert_eq!(
        (
            l.timeout_ms,
            l.circuit.failure_threshold,
            l.circuit.cooldown_ms
        ),
        (120_000, 3, 30_000)
    );
    assert_eq!(config.aliases["fast"], "llama3");

    let typo = serde_json::from_value::<LlmConfig>(json!({
        "providers": [{"name": "x", "kind": "openai", "base_url": "http://h", "models": [], "timeout": 5}]
    }));
    assert!(typo.unwrap_err().to_string().contains("unknown field"));
}

#[test]
fn config_errors() {
    let cfg =
        |name: &str| ProviderConfig::new(name, ProviderKind::Openai, "http://127.0.0.1:1", ["m"]);
    let build = |providers: Vec<ProviderConfig>, aliases: &[(&str, &str)]| {
        let config = LlmConfig {
            providers,
            aliases: aliases
                .iter()
                .map(|(a, m)| ((*a).into(), (*m).into()))
                .collect(),
        };
        Providers::with_env(&config, |_| None).map(drop)
    };
    assert!(matches!(
        build(vec![cfg("a"), cfg("a")], &[]),
        Err(ConfigError::DuplicateProvider(_))
    ));
    let mut env = cfg("a");
    env.api_key_env = Some("NOPE".into());
    let err = build(vec![env.clone()], &[]).unwrap_err();
    assert!(err.to_string().contains("NOPE"), "{err}");
    env.api_key_file = Some("/nonexistent".into());
    assert!(matches!(
        build(vec![env], &[]),
        Err(ConfigError::TwoKeySources(_))
    ));
    let mut file = cfg("a");
    file.api_key_file = Some("/nonexistent/key".into());
    assert!(matches!(
        build(vec![file], &[]),
        Err(ConfigError::KeyFile { .. })
    ));
    let mut url = cfg("a");
    url.base_url = "ftp://x".into();
    assert!(matches!(
        build(vec![url], &[]),
        Err(ConfigError::BadUrl { .. })
    ));
    let mut zero = cfg("a");
    zero.timeout_ms = 0;
    assert!(matches!(
        build(vec![zero], &[]),
        Err(ConfigError::Zero { .. })
    ));
    assert!(matches!(
        build(vec![cfg("a")], &[("x", "other")]),
        Err(ConfigError::UnservedAlias { .. })
    ));
    assert!(matches!(
        build(vec![cfg("a")], &[("m", "m")]),
        Err(ConfigError::AliasShadowsModel(_))
    ));
    assert!(build(vec![cfg("a")], &[("x", "m")]).is_ok());
}
