//! `js-verifier`: the QuickJS engine as a bounty verifier (world `verifier`).
//!
//! `delta-js` pre-initialises it with an author's ES module exporting
//! `verify(spec, submission)` (both parsed JSON). The function returns (or
//! resolves to) `{passed: boolean, scoreMilli?: 0..=1000, reasons?: string[]}`;
//! `scoreMilli` defaults to 1000 when passed, else 0. A throw, or a result of
//! another shape, crashes the run with the reason on stderr. Only `log` (and
//! `console`) is available; the other `delta` capabilities throw
//! `DeltaError("capability-not-available")`.

use delta_sdk::bindings::verifier::delta::agent::log as raw_log;
use rquickjs::{Ctx, Function, Object};

wit_bindgen::generate!({
    world: "delta:js/js-verifier@0.1.0",
    path: ["../../wit", "../js-engine/wit"],
    with: {
        "delta:agent/types@0.1.0": delta_sdk::bindings::verifier::delta::agent::types,
        "delta:agent/log@0.1.0": delta_sdk::bindings::verifier::delta::agent::log,
    },
});

fn install<'js>(ctx: &Ctx<'js>, native: &Object<'js>) -> rquickjs::Result<()> {
    native.set(
        "log",
        Function::new(ctx.clone(), |level: i32, message: String| {
            if !js_engine::loading() {
                raw_log::write(level_of(level), &message)
            }
        })?,
    )
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

struct JsVerifier;

impl Guest for JsVerifier {
    fn wizer_initialize(source: String) -> Result<(), String> {
        js_engine::initialize(&source, "verify", install)
    }

    fn verify(spec: String, submission: String) -> Verdict {
        match js_engine::call(&[&spec, &submission]) {
            js_engine::Answer::Ok(json) => match verdict(&json) {
                Ok(verdict) => verdict,
                Err(why) => js_engine::fail(&format!("verify() returned {why}")),
            },
            js_engine::Answer::Error { code, message, .. } => {
                js_engine::fail(&format!("verify() threw {code}: {message}"))
            }
        }
    }
}

fn verdict(json: &str) -> Result<Verdict, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let passed = value
        .get("passed")
        .and_then(|v| v.as_bool())
        .ok_or("no boolean `passed`")?;
    let score_milli = match value.get("scoreMilli") {
        None | Some(serde_json::Value::Null) => {
            if passed {
                1000
            } else {
                0
            }
        }
        Some(v) => v
            .as_u64()
            .filter(|s| *s <= 1000)
            .ok_or("a `scoreMilli` that is not an integer in 0..=1000")? as u32,
    };
    let reasons = match value.get("reasons") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|r| {
                r.as_str()
                    .map(str::to_owned)
                    .ok_or("a reason that is not a string")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`reasons` that is not an array of strings".to_owned()),
    };
    Ok(Verdict {
        passed,
        score_milli,
        reasons,
    })
}

export!(JsVerifier);
