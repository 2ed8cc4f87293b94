//! The native side of the `delta` JS module for agents: JSON in, JSON out,
//! through `delta-sdk`. A malformed request from JS is answered with the
//! error code `invalid-request` (never a crash); capability refusals carry
//! the Rust SDK's `AgentError` codes (`llm-budget-exceeded`, ...) plus the
//! variant as `kind` and its details.

use delta_sdk::bindings::verifier::delta::agent::log as raw_log;
use delta_sdk::{budget, llm, messaging};
use rquickjs::{Ctx, Function, Object};
use serde_json::{Value, json};

/// Install `log`, `llm`, `send`, `budget`, `kv`, `http` and `agents` on
/// the native object.
pub fn install<'js>(ctx: &Ctx<'js>, native: &Object<'js>) -> rquickjs::Result<()> {
    native.set(
        "log",
        Function::new(ctx.clone(), |level: i32, message: String| {
            if !js_engine::loading() {
                raw_log::write(level_of(level), &message)
            }
        })?,
    )?;
    native.set(
        "llm",
        Function::new(ctx.clone(), |request: String| answer(complete(&request)))?,
    )?;
    native.set(
        "send",
        Function::new(ctx.clone(), |request: String| answer(send(&request)))?,
    )?;
    native.set(
        "budget",
        Function::new(ctx.clone(), |request: String| answer(budget_op(&request)))?,
    )?;
    native.set(
        "kv",
        Function::new(ctx.clone(), |request: String| {
            answer(crate::tools::kv_op(&request))
        })?,
    )?;
    native.set(
        "http",
        Function::new(ctx.clone(), |request: String| {
            answer(crate::tools::http_op(&request))
        })?,
    )?;
    native.set(
        "agents",
        Function::new(ctx.clone(), |request: String| {
            answer(crate::tools::agents_op(&request))
        })?,
    )?;
    Ok(())
}

fn level_of(level: i32) -> raw_log::Level {
    match level {
        0 => raw_log::Level::Trace,
        1 => raw_log::Level::Debug,
        2 => raw_log::Level::Info,
        3 => raw_log::Level::Warn,
        _ => raw_log::Level::Error,
    }
}

pub(crate) fn answer(result: Result<Value, Value>) -> String {
    match result {
        Ok(ok) => json!({ "ok": ok }),
        Err(error) => json!({ "error": error }),
    }
    .to_string()
}

pub(crate) fn invalid(message: impl Into<String>) -> Value {
    json!({ "code": "invalid-request", "kind": "invalid-request", "message": message.into() })
}

pub(crate) fn parse(request: &str) -> Result<Value, Value> {
    if js_engine::loading() {
        return Err(json!({
            "code": "not-available-at-load",
            "kind": "not-available-at-load",
            "message": "capabilities can only be called while a task runs, not at the module's top level",
        }));
    }
    serde_json::from_str(request).map_err(|e| invalid(format!("not JSON: {e}")))
}

pub(crate) fn string(v: &Value, key: &str) -> Result<String, Value> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("`{key}` must be a string")))
}

fn complete(request: &str) -> Result<Value, Value> {
    let v = parse(request)?;
    let mut req = llm::CompletionRequest::new(string(&v, "model")?);
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`messages` must be an array of {role, content}"))?;
    for m in messages {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system") => llm::Role::System,
            Some("user") => llm::Role::User,
            Some("assistant") => llm::Role::Assistant,
            _ => {
                return Err(invalid(
                    "a message's `role` must be system, user or assistant",
                ));
            }
        };
        req = req.message(llm::Message::new(role, string(m, "content")?));
    }
    if let Some(max) = v.get("maxTokens").filter(|m| !m.is_null()) {
        let max = max
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .ok_or_else(|| invalid("`maxTokens` must be a positive integer"))?;
        req = req.max_tokens(max);
    }
    if let Some(t) = v.get("temperature").filter(|t| !t.is_null()) {
        let t = t
            .as_f64()
            .ok_or_else(|| invalid("`temperature` must be a number"))?;
        req = req.temperature(t as f32);
    }
    if let Some(stop) = v.get("stop").filter(|s| !s.is_null()) {
        let stop = stop
            .as_array()
            .ok_or_else(|| invalid("`stop` must be an array of strings"))?;
        for s in stop {
            let s = s
                .as_str()
                .ok_or_else(|| invalid("`stop` must be an array of strings"))?;
            req = req.stop(s);
        }
    }
    match llm::complete(req) {
        Ok(c) => Ok(json!({
            "text": c.text,
            "model": c.model,
            "finishReason": match c.finish_reason {
                llm::FinishReason::Stop => "stop",
                llm::FinishReason::Length => "length",
                llm::FinishReason::Other => "other",
            },
            "usage": { "inputTokens": c.usage.input_tokens, "outputTokens": c.usage.output_tokens },
        })),
        Err(e) => {
            let mut error = refusal("llm", e.code(), &e.to_string(), e.is_retryable());
            match &e {
                llm::LlmError::BudgetExceeded(s) => {
                    error["needed"] = s.needed.into();
                    error["available"] = s.available.into();
                }
                llm::LlmError::RateLimited { retry_after_ms } => {
                    error["retryAfterMs"] = (*retry_after_ms).into();
                }
                _ => {}
            }
            Err(error)
        }
    }
}

fn send(request: &str) -> Result<Value, Value> {
    let v = parse(request)?;
    let channel = match v.get("channel").and_then(Value::as_str) {
        Some("email") => messaging::Channel::Email,
        Some("sms") => messaging::Channel::Sms,
        _ => return Err(invalid("`channel` must be \"email\" or \"sms\"")),
    };
    let mut req =
        messaging::SendRequest::new(channel, string(&v, "templateId")?, string(&v, "recipient")?);
    match v.get("variables") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (name, value) in vars {
                let value = value
                    .as_str()
                    .ok_or_else(|| invalid(format!("variable `{name}` must be a string")))?;
                req = req.var(name.clone(), value);
            }
        }
        Some(_) => return Err(invalid("`variables` must be an object of strings")),
    }
    match messaging::send(req) {
        Ok(r) => Ok(json!({ "messageId": r.message_id, "tokensCharged": r.tokens_charged })),
        Err(e) => {
            let mut error = refusal("messaging", e.code(), &e.to_string(), e.is_retryable());
            match &e {
                messaging::SendError::BudgetExceeded(s) => {
                    error["needed"] = s.needed.into();
                    error["available"] = s.available.into();
                }
                messaging::SendError::RateLimited { retry_after_ms } => {
                    error["retryAfterMs"] = (*retry_after_ms).into();
                }
                messaging::SendError::VariableNotAllowed(name)
                | messaging::SendError::VariableInvalid(name)
                | messaging::SendError::VariableMissing(name) => {
                    error["variable"] = name.clone().into();
                }
                _ => {}
            }
            Err(error)
        }
    }
}

fn budget_op(request: &str) -> Result<Value, Value> {
    let v = parse(request)?;
    let result = match v.get("op").and_then(Value::as_str) {
        Some("remaining") => budget::remaining().map(|b| {
            json!({
                "allocated": b.allocated,
                "spent": b.spent,
                "reserved": b.reserved,
                "available": b.available,
            })
        }),
        Some("request") => {
            let amount = v
                .get("amount")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("`amount` must be a non-negative integer"))?;
            budget::request(amount, &string(&v, "reason")?).map(token_request)
        }
        Some("poll") => budget::poll_request(&string(&v, "id")?).map(token_request),
        _ => return Err(invalid("unknown budget operation")),
    };
    result.map_err(|e| {
        let retryable = matches!(e, budget::BudgetError::Unavailable(_));
        let mut error = refusal("budget", e.code(), &e.to_string(), retryable);
        if let budget::BudgetError::InvalidAmount { limit } = e {
            error["limit"] = limit.into();
        }
        error
    })
}

fn token_request(r: budget::TokenRequest) -> Value {
    json!({
        "id": r.id,
        "amount": r.amount,
        "reason": r.reason,
        "status": match r.status {
            budget::RequestStatus::Pending => "pending",
            budget::RequestStatus::Approved => "approved",
            budget::RequestStatus::Denied => "denied",
            budget::RequestStatus::Expired => "expired",
        },
    })
}

/// The same code as the Rust SDK's `AgentError` conversion (`llm-…`,
/// `messaging-…`, `budget-…`), with the bare variant as `kind`.
pub(crate) fn refusal(capability: &str, kind: &str, message: &str, retryable: bool) -> Value {
    json!({
        "code": format!("{capability}-{kind}"),
        "kind": kind,
        "capability": capability,
        "message": message,
        "retryable": retryable,
    })
}
