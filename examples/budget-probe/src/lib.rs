//! `budget-probe`: a cheap host-call benchmark and a probe of every
//! capability.
//!
//! Input `{"calls": N}` (`N` a `u64`, default 1; `{}` means one call):
//! calls `budget::remaining()` `N` times and returns
//! `{"calls": N, "last": <last>}` where `<last>` is the `available` amount of
//! the last balance as a decimal string (for example `"1000"`), or the
//! kebab-case error variant of the last call (for example
//! `"not-configured"`), or `"none"` when `N` is 0.
//!
//! Input `{"probe": "all"}`: calls each capability once, in this order:
//!
//! 1. `llm.complete` with model `test-model`, one user message `ping`,
//!    `max-tokens` 16, no temperature and no stop sequences;
//! 2. `messaging.send`: channel email, template `welcome`, recipient
//!    `a@example.com`, no variables;
//! 3. `budget.remaining`;
//! 4. `budget.request(10, "more")`;
//! 5. `log.write` at info level: `probe: llm=<r> messaging=<r>
//!    budget-remaining=<r> budget-request=<r>`;
//!
//! and returns, for each of the first four, `"ok"` or the kebab-case error
//! variant name:
//! `{"budget-remaining": "...", "budget-request": "...", "llm": "...",
//! "messaging": "..."}` (exactly these four keys).
//!
//! Any other `probe` value is answered with an `invalid-input` agent error.

use std::collections::BTreeMap;

use delta_sdk::llm::CompletionRequest;
use delta_sdk::messaging::SendRequest;
use delta_sdk::prelude::*;

#[derive(Deserialize)]
struct Input {
    calls: Option<u64>,
    probe: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Calls { calls: u64, last: String },
    Probe(BTreeMap<&'static str, &'static str>),
}

fn verdict<T, E>(result: Result<T, E>, code: impl FnOnce(&E) -> &'static str) -> &'static str {
    match &result {
        Ok(_) => "ok",
        Err(e) => code(e),
    }
}

fn probe_all() -> Output {
    let llm = verdict(
        CompletionRequest::new("test-model")
            .user("ping")
            .max_tokens(16)
            .complete(),
        |e| e.code(),
    );
    let messaging = verdict(SendRequest::email("welcome", "a@example.com").send(), |e| {
        e.code()
    });
    let remaining = verdict(budget::remaining(), |e| e.code());
    let request = verdict(budget::request(10, "more"), |e| e.code());
    info!(
        "probe: llm={llm} messaging={messaging} budget-remaining={remaining} budget-request={request}"
    );
    Output::Probe(BTreeMap::from([
        ("llm", llm),
        ("messaging", messaging),
        ("budget-remaining", remaining),
        ("budget-request", request),
    ]))
}

fn call_remaining(calls: u64) -> Output {
    let mut last = String::from("none");
    for _ in 0..calls {
        last = match budget::remaining() {
            Ok(balance) => balance.available.to_string(),
            Err(e) => e.code().to_owned(),
        };
    }
    Output::Calls { calls, last }
}

struct BudgetProbe;

impl Agent for BudgetProbe {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, AgentError> {
        match input.probe.as_deref() {
            Some("all") => Ok(probe_all()),
            Some(other) => Err(AgentError::invalid_input(format!(
                "unknown probe `{other}` (the only probe is `all`)"
            ))),
            None => Ok(call_remaining(input.calls.unwrap_or(1))),
        }
    }
}

delta_sdk::export_agent!(BudgetProbe);
