//! `json-churn`: a compute-heavy guest with branchy control flow, for the
//! fuel-metering benchmark.
//!
//! * Input: `{"iterations": N}` (`N` a `u64`; defaults to 1 when absent).
//! * Builds a fixed nested `serde_json::Value` document once (objects,
//!   arrays, strings, integers, floats, booleans and nulls; 2,021 bytes when
//!   serialized), then `N` times serializes the current document to a
//!   compact string and parses that string back into the document for the
//!   next round.
//! * `checksum` folds the serialized lengths:
//!   `checksum = checksum.wrapping_mul(31).wrapping_add(len)`, starting from
//!   0 (the length is the same every round, so the result depends only on
//!   `N`: 2021 for `N = 1`, 0 for `N = 0`).
//! * Output: `{"checksum": <u64>, "iterations": N}`. No host calls and no
//!   logging.

use delta_sdk::prelude::*;
use serde_json::{Value, json};

fn default_iterations() -> u64 {
    1
}

#[derive(Deserialize)]
struct Input {
    #[serde(default = "default_iterations")]
    iterations: u64,
}

#[derive(Serialize)]
struct Output {
    checksum: u64,
    iterations: u64,
}

/// The fixed document churned by every iteration.
fn document() -> Value {
    let items: Vec<Value> = (0..14u32)
        .map(|i| {
            json!({
                "id": i,
                "name": format!("item-{i:02}"),
                "price": f64::from(i) * 1.25 + 0.5,
                "active": i % 3 != 0,
                "tags": ["alpha", if i % 2 == 0 { "even" } else { "odd" }, format!("t{}", i % 5)],
                "dims": { "w": i * 3, "h": i * 7, "unit": "cm" },
                "parent": if i == 0 { Value::Null } else { json!(i - 1) },
            })
        })
        .collect();
    json!({
        "version": 3,
        "owner": { "tenant": "tenant-benchmark", "agent": "json-churn", "verified": true },
        "thresholds": [0.5, 1.5, -2.25, 1e10],
        "matrix": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        "escapes": "quote \" backslash \\ tab \t unicode \u{e9}",
        "items": items,
    })
}

struct JsonChurn;

impl Agent for JsonChurn {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, AgentError> {
        let mut doc = document();
        let mut checksum: u64 = 0;
        for _ in 0..input.iterations {
            let text = serde_json::to_string(&doc)
                .map_err(|e| AgentError::new("internal", e.to_string()))?;
            checksum = checksum.wrapping_mul(31).wrapping_add(text.len() as u64);
            doc = serde_json::from_str(&text)
                .map_err(|e| AgentError::new("internal", e.to_string()))?;
        }
        Ok(Output {
            checksum,
            iterations: input.iterations,
        })
    }
}

delta_sdk::export_agent!(JsonChurn);
