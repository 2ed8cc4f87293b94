//! The native side of `kv`, `http` and `agents` in the `delta` JS module.
//!
//! Bytes cross as `{"text": "..."}` when they are UTF-8 and as
//! `{"bytes": [n, ...]}` otherwise, so nothing is lost or re-encoded on the
//! way (the prelude turns them into a string or a `Uint8Array`).

use delta_sdk::{agents, http, kv};
use serde_json::{Value, json};

use crate::capabilities::{invalid, parse, refusal, string};

/// `{"text": ...}` or `{"bytes": [...]}` for `bytes`.
fn data(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => json!({ "text": text }),
        Err(e) => json!({ "bytes": e.into_bytes() }),
    }
}

/// The bytes of a `{"text"}` / `{"bytes"}` value under `key`.
fn bytes_of(v: &Value, key: &str) -> Result<Vec<u8>, Value> {
    let bad = || invalid(format!("`{key}` must be a string or a Uint8Array"));
    let value = v.get(key).ok_or_else(bad)?;
    if let Some(text) = value.get("text").and_then(Value::as_str) {
        return Ok(text.as_bytes().to_vec());
    }
    let items = value
        .get("bytes")
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    items
        .iter()
        .map(|b| {
            b.as_u64()
                .and_then(|b| u8::try_from(b).ok())
                .ok_or_else(bad)
        })
        .collect()
}

fn kv_refusal(e: kv::KvError) -> Value {
    let retryable = matches!(
        e,
        kv::KvError::Unavailable(_) | kv::KvError::Conflict { .. }
    );
    let mut error = refusal("kv", e.code(), &e.to_string(), retryable);
    match e {
        kv::KvError::Conflict { current } => error["current"] = current.into(),
        kv::KvError::TooLarge { limit } => error["limit"] = limit.into(),
        _ => {}
    }
    error
}

/// `{op: "get" | "set" | "delete" | "list" | "cas", ...}`.
pub(crate) fn kv_op(request: &str) -> Result<Value, Value> {
    let v = parse(request)?;
    let op = v.get("op").and_then(Value::as_str).unwrap_or_default();
    let result = match op {
        "get" => kv::get(&string(&v, "key")?).map(|entry| match entry {
            None => Value::Null,
            Some(e) => json!({ "key": e.key, "version": e.version, "value": data(e.value) }),
        }),
        "set" => kv::set(&string(&v, "key")?, bytes_of(&v, "value")?).map(Value::from),
        "delete" => kv::delete(&string(&v, "key")?).map(Value::from),
        "cas" => {
            let expected = v
                .get("expected")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("`expected` must be a version (0: absent)"))?;
            kv::compare_and_swap(&string(&v, "key")?, expected, bytes_of(&v, "value")?)
                .map(Value::from)
        }
        "list" => {
            let cursor = match v.get("cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(c.clone()),
                Some(_) => return Err(invalid("`cursor` must be a string")),
            };
            let limit = match v.get("limit") {
                None | Some(Value::Null) => 0,
                Some(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("`limit` must be a whole number"))?,
            };
            kv::list_prefix(&string(&v, "prefix")?, cursor.as_deref(), limit)
                .map(|page| json!({ "keys": page.keys, "nextCursor": page.next_cursor }))
        }
        _ => return Err(invalid("unknown kv operation")),
    };
    result.map_err(kv_refusal)
}

/// `{method, url, headers: [[name, value], ...], body?: {text | bytes}}`.
pub(crate) fn http_op(request: &str) -> Result<Value, Value> {
    let v = parse(request)?;
    let method = match v.get("method").and_then(Value::as_str).unwrap_or("GET") {
        m if m.eq_ignore_ascii_case("get") => http::Method::Get,
        m if m.eq_ignore_ascii_case("head") => http::Method::Head,
        m if m.eq_ignore_ascii_case("post") => http::Method::Post,
        m if m.eq_ignore_ascii_case("put") => http::Method::Put,
        m if m.eq_ignore_ascii_case("patch") => http::Method::Patch,
        m if m.eq_ignore_ascii_case("delete") => http::Method::Delete,
        _ => {
            return Err(invalid(
                "`method` must be GET, HEAD, POST, PUT, PATCH or DELETE",
            ));
        }
    };
    let mut req = http::Request::new(method, string(&v, "url")?);
    if let Some(headers) = v.get("headers").filter(|h| !h.is_null()) {
        let pairs = headers
            .as_array()
            .ok_or_else(|| invalid("`headers` must be [name, value] pairs"))?;
        for pair in pairs {
            let (Some(name), Some(value)) = (
                pair.get(0).and_then(Value::as_str),
                pair.get(1).and_then(Value::as_str),
            ) else {
                return Err(invalid("`headers` must be [name, value] pairs of strings"));
            };
            req = req.header(name, value);
        }
    }
    if v.get("body").is_some_and(|b| !b.is_null()) {
        req = req.body(bytes_of(&v, "body")?);
    }
    match req.send() {
        Ok(r) => Ok(json!({ "status": r.status, "headers": r.headers, "body": data(r.body) })),
        Err(e) => {
            let retryable = matches!(
                e,
                http::HttpError::RateLimited(_)
                    | http::HttpError::Timeout
                    | http::HttpError::Failed(_)
            );
            let mut error = refusal("http", e.code(), &e.to_string(), retryable);
            match e {
                http::HttpError::RateLimited(ms) => error["retryAfterMs"] = ms.into(),
                http::HttpError::TooLarge(limit) => error["limit"] = limit.into(),
                _ => {}
            }
            Err(error)
        }
    }
}

/// `{to, message}` (the message as JSON text).
pub(crate) fn agents_op(request: &str) -> Result<Value, Value> {
    let v = parse(request)?;
    match agents::send_json(&string(&v, "to")?, &string(&v, "message")?) {
        Ok(sent) => Ok(json!({ "messageId": sent.message_id, "runId": sent.run_id })),
        Err(e) => {
            let retryable = matches!(
                e,
                agents::SendError::RateLimited(_) | agents::SendError::Unavailable(_)
            );
            let mut error = refusal("agents", e.code(), &e.to_string(), retryable);
            match e {
                agents::SendError::RateLimited(ms) => error["retryAfterMs"] = ms.into(),
                agents::SendError::TooLarge(limit) => error["limit"] = limit.into(),
                agents::SendError::TooDeep(limit) | agents::SendError::TooMany(limit) => {
                    error["limit"] = limit.into()
                }
                _ => {}
            }
            Err(error)
        }
    }
}
