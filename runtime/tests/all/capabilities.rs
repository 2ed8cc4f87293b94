//! Capability imports seen from a real guest: `not-configured` without a
//! backend, backends scoped to the caller's identity, and host calls cut
//! off by the run's deadline and cancellation.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use delta_guest_artifacts as guests;
use delta_host_api::budget::{Balance, BudgetError, TokenRequest};
use delta_host_api::llm::{Completion, CompletionRequest, LlmError};
use delta_host_api::{BudgetLedger, CallContext, Capabilities, LlmGateway};
use delta_host_api::{LedgerError, Reservation, Settlement};
use delta_runtime::{InvocationLimits, Outcome};

#[tokio::test]
async fn every_capability_answers_not_configured_without_a_backend() {
    let rt = runtime();
    let probe = load(&rt, guests::BUDGET_PROBE).await;
    let report = run(
        &rt,
        &probe,
        r#"{"probe":"all"}"#,
        InvocationLimits::default(),
    )
    .await;
    let Outcome::Completed { output } = &report.outcome else {
        panic!("{report:?}")
    };
    let value: serde_json::Value = serde_json::from_str(output).expect("json");
    assert_eq!(
        value,
        serde_json::json!({
            "llm": "not-configured",
            "messaging": "not-configured",
            "budget-remaining": "not-configured",
            "budget-request": "not-configured",
        })
    );
}

/// A ledger that records who asked, to check the host passes its own ids.
struct RecordingLedger {
    seen: Mutex<Vec<CallContext>>,
}

#[async_trait]
impl BudgetLedger for RecordingLedger {
    async fn reserve(
        &self,
        ctx: &CallContext,
        _amount: u64,
        _purpose: &str,
    ) -> Result<Reservation, LedgerError> {
        Err(LedgerError::UnknownAccount(ctx.agent_id.to_string()))
    }

    async fn settle(&self, r: &Reservation, _used: u64) -> Result<Settlement, LedgerError> {
        Err(LedgerError::UnknownReservation(r.id.clone()))
    }

    async fn release(&self, r: &Reservation) -> Result<(), LedgerError> {
        Err(LedgerError::UnknownReservation(r.id.clone()))
    }

    async fn remaining(&self, ctx: &CallContext) -> Result<Balance, BudgetError> {
        self.seen.lock().expect("lock").push(ctx.clone());
        Ok(Balance {
            allocated: 1_000,
            spent: 100,
            reserved: 23,
            available: 877,
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

#[tokio::test]
async fn a_configured_backend_is_called_with_the_hosts_identity() {
    let rt = runtime();
    let probe = load(&rt, guests::BUDGET_PROBE).await;
    let ledger = Arc::new(RecordingLedger {
        seen: Mutex::default(),
    });
    let mut invocation = invocation(r#"{"calls": 3}"#, InvocationLimits::default());
    invocation.capabilities = Capabilities {
        budget: Some(ledger.clone()),
        ..Capabilities::default()
    };
    let expected = invocation.context.clone();
    let report = rt.run_agent(&probe, invocation).await.expect("run");
    let Outcome::Completed { output } = &report.outcome else {
        panic!("{report:?}")
    };
    let value: serde_json::Value = serde_json::from_str(output).expect("json");
    assert_eq!(value, serde_json::json!({"calls": 3, "last": "877"}));
    let seen = ledger.seen.lock().expect("lock");
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|ctx| *ctx == expected));
}

/// A provider that never answers in time.
struct StalledLlm;

#[async_trait]
impl LlmGateway for StalledLlm {
    async fn complete(
        &self,
        _ctx: &CallContext,
        _request: CompletionRequest,
    ) -> Result<Completion, LlmError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Err(LlmError::Unavailable("unreachable".into()))
    }
}

fn stalled() -> Capabilities {
    Capabilities {
        llm: Some(Arc::new(StalledLlm)),
        ..Capabilities::default()
    }
}

#[tokio::test]
async fn a_host_call_outliving_the_deadline_ends_the_run_at_the_deadline() {
    let rt = runtime();
    let probe = load(&rt, guests::BUDGET_PROBE).await;
    let limits = InvocationLimits {
        timeout_ms: 300,
        ..InvocationLimits::default()
    };
    let mut invocation = invocation(r#"{"probe":"all"}"#, limits);
    invocation.capabilities = stalled();
    let started = Instant::now();
    let report = rt.run_agent(&probe, invocation).await.expect("run");
    assert_eq!(report.outcome, Outcome::Deadline, "{report:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The store survived the interrupted call, so usage is still reported.
    assert!(report.usage.fuel_used > 0);
    assert_hello_works(&rt).await;
}

#[tokio::test]
async fn cancelling_during_a_host_call_ends_the_run_as_cancelled() {
    let rt = runtime();
    let probe = load(&rt, guests::BUDGET_PROBE).await;
    let mut invocation = invocation(r#"{"probe":"all"}"#, InvocationLimits::default());
    invocation.capabilities = stalled();
    let cancel = invocation.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let report = rt.run_agent(&probe, invocation).await.expect("run");
    assert_eq!(report.outcome, Outcome::Cancelled, "{report:?}");
}

#[tokio::test]
async fn seed_bots_report_unconfigured_capabilities_as_agent_errors() {
    let rt = runtime();
    for (path, input, code) in [
        (
            guests::EMAIL_BOT,
            r#"{"to":"a@example.com","name":"Ada"}"#,
            "messaging-not-configured",
        ),
        (
            guests::SMS_BOT,
            r#"{"to":"+15555550100","code":"1234"}"#,
            "messaging-not-configured",
        ),
        (
            guests::LLM_TASK_BOT,
            r#"{"task":"say hi"}"#,
            "llm-not-configured",
        ),
    ] {
        let bot = load(&rt, path).await;
        let report = run(&rt, &bot, input, InvocationLimits::default()).await;
        match &report.outcome {
            Outcome::AgentError { code: got, .. } => assert_eq!(got, code, "{path}"),
            other => panic!("{path}: expected agent error {code}, got {other:?}"),
        }
    }
}
