//! HTTP request bodies, fuzzed for every endpoint (issue 13): a driver over
//! the live OpenAPI document. For each operation that takes a JSON body it
//! sends bodies generated from the operation's schema by a seeded random
//! source — well-formed ones with hostile values (NUL and other control
//! characters, long and non-ASCII strings, integers at their limits),
//! ones with a field dropped, a type changed or an unknown field added,
//! and bytes that are not JSON — to paths filled with ids of resources
//! that exist, on SQLite and on PostgreSQL. Every answer must be a client
//! error or a success: a 5xx is a finding.
//!
//! Deterministic (the seeds are fixed, so a finding replays); run longer
//! locally with `DELTA_FUZZ_BODIES=<iterations per operation>` (default 6).

use std::collections::HashMap;

use crate::common;

use common::bounties::{create_agent, upload};
use common::{Control, Dialect, start_node_in_process};
use delta_guest_artifacts as guests;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// Operations left out, and why: they end the session the driver uses.
const SKIPPED: &[(&str, &str)] = &[("post", "/v1/auth/logout"), ("delete", "/v1/me")];

/// Strings that have broken servers before.
const NASTY: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "a\u{0}b",
    "\u{7f}\u{1b}[31m",
    "line\nbreak",
    "\r\nX-Injected: 1",
    "é漢字🦀",
    "\u{202e}evil",
    "../../etc/passwd",
    "'; DROP TABLE agents; --",
    "%00",
    "{{ 7*7 }}",
    "-1",
    "99999999999999999999999",
    "null",
];

/// Generates values for a schema, resolving `$ref` in `doc`.
struct Gen<'a> {
    doc: &'a Value,
    rng: StdRng,
    /// Real ids to use for fields that name resources.
    ids: &'a HashMap<&'static str, String>,
}

impl Gen<'_> {
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        let mut schema = schema;
        for _ in 0..16 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return schema;
            };
            let name = reference.rsplit('/').next().unwrap_or_default();
            schema = &self.doc["components"]["schemas"][name];
        }
        schema
    }

    fn string(&mut self, name: &str, schema: &Value) -> Value {
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.is_empty()
            && self.rng.random_bool(0.8)
        {
            return options[self.rng.random_range(0..options.len())].clone();
        }
        let known = self
            .ids
            .iter()
            .find(|(k, _)| name.ends_with(*k))
            .map(|(_, v)| v.clone());
        match self.rng.random_range(0..10) {
            0..=2 if known.is_some() => Value::String(known.unwrap_or_default()),
            0..=3 => Value::String(NASTY[self.rng.random_range(0..NASTY.len())].to_owned()),
            4 => Value::String("x".repeat(self.rng.random_range(100..20_000))),
            5 => {
                let len = self.rng.random_range(1..40);
                Value::String(
                    (0..len)
                        .map(|_| char::from_u32(self.rng.random_range(0..0x11_000)).unwrap_or('?'))
                        .collect(),
                )
            }
            _ => Value::String(format!("{name}-{}", self.rng.random_range(0..1000))),
        }
    }

    fn integer(&mut self) -> Value {
        match self.rng.random_range(0..8) {
            0 => json!(0),
            1 => json!(-1),
            2 => json!(i64::MAX),
            3 => json!(i64::MIN),
            4 => json!(u64::MAX),
            5 => json!(1.5),
            _ => json!(self.rng.random_range(1..100_000)),
        }
    }

    fn value(&mut self, name: &str, schema: &Value, depth: u32) -> Value {
        let schema = self.resolve(schema).clone();
        if depth > 6 {
            return Value::Null;
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array)
                && !options.is_empty()
            {
                let pick = options[self.rng.random_range(0..options.len())].clone();
                return self.value(name, &pick, depth + 1);
            }
        }
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for part in parts {
                if let Value::Object(fields) = self.value(name, part, depth + 1) {
                    merged.extend(fields);
                }
            }
            return Value::Object(merged);
        }
        let kind = match &schema["type"] {
            Value::String(t) => t.clone(),
            // OpenAPI 3.1: ["string", "null"].
            Value::Array(types) => {
                let types: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                if types.is_empty() {
                    String::new()
                } else {
                    types[self.rng.random_range(0..types.len())].to_owned()
                }
            }
            _ if schema.get("properties").is_some() => "object".to_owned(),
            _ => String::new(),
        };
        match kind.as_str() {
            "object" => self.object(&schema, depth),
            "array" => {
                let n = self.rng.random_range(0..4);
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                Value::Array(
                    (0..n)
                        .map(|_| self.value(name, &items, depth + 1))
                        .collect(),
                )
            }
            "string" => self.string(name, &schema),
            "integer" => self.integer(),
            "number" => json!(self.rng.random_range(-1e12..1e12)),
            "boolean" => json!(self.rng.random_bool(0.5)),
            "null" => Value::Null,
            // Any JSON (e.g. a run's input).
            _ => match self.rng.random_range(0..4) {
                0 => json!({ "nested": { "deep": [1, "two", null] } }),
                1 => json!(NASTY[self.rng.random_range(0..NASTY.len())]),
                2 => json!([]),
                _ => json!(self.rng.random_range(0..10)),
            },
        }
    }

    fn object(&mut self, schema: &Value, depth: u32) -> Value {
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Map::new();
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                if required.contains(name) || self.rng.random_bool(0.6) {
                    let v = self.value(name, prop, depth + 1);
                    out.insert(name.clone(), v);
                }
            }
        }
        Value::Object(out)
    }

    /// A body for `schema`: mostly well-formed, sometimes broken on purpose.
    fn body(&mut self, schema: &Value) -> Vec<u8> {
        let mut value = self.value("body", schema, 0);
        match self.rng.random_range(0..10) {
            // Bytes that are not JSON, or not an object.
            0 => {
                let len = self.rng.random_range(0..64);
                return (0..len).map(|_| self.rng.random()).collect();
            }
            1 => value = json!([value]),
            // A field dropped, retyped or added.
            2 | 3 => {
                if let Value::Object(fields) = &mut value {
                    let keys: Vec<String> = fields.keys().cloned().collect();
                    if !keys.is_empty() {
                        let key = &keys[self.rng.random_range(0..keys.len())];
                        if self.rng.random_bool(0.5) {
                            fields.remove(key);
                        } else {
                            fields.insert(key.clone(), json!({ "unexpected": [true] }));
                        }
                    }
                    fields.insert("not_a_field".into(), json!(1));
                }
            }
            _ => {}
        }
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// `path` with each `{param}` replaced by an id that exists where the
/// driver made one.
fn fill(path: &str, ids: &HashMap<&'static str, String>) -> String {
    let collection_id = |collection: &str| -> Option<&String> {
        let key = match collection {
            "agents" => "agent_id",
            "bounties" => "bounty_id",
            "schedules" => "schedule_id",
            "webhooks" => "webhook_id",
            "tenants" => "tenant_id",
            "components" => "sha256",
            _ => return None,
        };
        ids.get(key)
    };
    let mut out = Vec::new();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.starts_with('{') {
            let previous = if i > 0 { parts[i - 1] } else { "" };
            out.push(
                collection_id(previous)
                    .cloned()
                    .unwrap_or_else(|| "fuzz_missing".to_owned()),
            );
        } else {
            out.push((*part).to_owned());
        }
    }
    out.join("/")
}

async fn fuzz_bodies(dialect: Dialect) {
    let ctl = Control::start_with(dialect, common::with_vault).await;
    let _node = start_node_in_process(&ctl, "fuzz-node", "").await;
    let alice = ctl.register("alice").await;
    let sha = upload(
        &ctl,
        &alice,
        &std::fs::read(guests::HELLO_AGENT).expect("guest"),
    )
    .await;
    let agent = create_agent(&ctl, &alice, "fuzzed", &sha).await;
    let mut ids: HashMap<&'static str, String> = HashMap::new();
    ids.insert("agent_id", agent.clone());
    ids.insert("tenant_id", alice.tenant_id.clone());
    ids.insert("sha256", sha);
    ids.insert("component", ids["sha256"].clone());
    let (status, schedule) = ctl
        .call(
            Method::POST,
            &format!("/v1/agents/{agent}/schedules"),
            Some(&alice.access),
            Some(json!({ "cron": "0 0 1 1 *" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    ids.insert(
        "schedule_id",
        schedule["id"].as_str().unwrap_or_default().to_owned(),
    );
    let (status, doc) = ctl.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);

    let iterations: usize = std::env::var("DELTA_FUZZ_BODIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut sent = 0;
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|s| Value::Object(s.clone()))
            else {
                continue;
            };
            if SKIPPED.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            let Ok(verb) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let url = ctl.url(&fill(path, &ids));
            // One seed per operation: a finding names the seed to replay.
            let seed = path
                .bytes()
                .chain(method.bytes())
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            let mut generator = Gen {
                doc: &doc,
                rng: StdRng::seed_from_u64(seed),
                ids: &ids,
            };
            for i in 0..iterations {
                let body = generator.body(&schema);
                let resp = ctl
                    .client
                    .request(verb.clone(), &url)
                    .bearer_auth(&alice.access)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e})"));
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                assert!(
                    !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{method} {path} (seed {seed}, iteration {i}) answered {status}: {text}\nbody: {}",
                    String::from_utf8_lossy(&body)
                );
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    // Only for a node that is not there, never the database.
                    assert!(!text.contains("\"busy\""), "{method} {path}: {text}");
                }
                sent += 1;
            }
        }
    }
    assert!(sent >= 30 * iterations, "only {sent} bodies sent");
    // The session still works and the data is whole: nothing half-written
    // broke a later read.
    let (status, page) = ctl
        .call(Method::GET, "/v1/agents", Some(&alice.access), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_body_is_answered_without_a_server_error_sqlite() {
    fuzz_bodies(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_body_is_answered_without_a_server_error_postgres() {
    fuzz_bodies(Dialect::Postgres).await;
}
