//! `json-verifier`: a bounty verifier (world `verifier`) that accepts a
//! submission equal to the expected JSON document.
//!
//! * Spec: `{"expected": <any JSON>}`; submission: any JSON document.
//! * Equality is `serde_json::Value` equality: object key order and
//!   whitespace do not matter, but `1` and `1.0` are different.
//! * Equal: `{passed: true, score-milli: 1000, reasons: ["submission matches
//!   the expected document"]}`, and one info log line `verdict: passed`.
//! * Different: `{passed: false, score-milli: 0, reasons: ["submission
//!   differs from the expected document"]}`, and one info log line
//!   `verdict: failed`.
//! * A spec or submission that is not valid JSON (or a spec without
//!   `expected`) is failed by the SDK with score 0 and the single reason
//!   `invalid spec: <serde error>` / `invalid submission: <serde error>`;
//!   nothing is logged then.
//!
//! The component imports only `delta:agent/log` from the Delta contract.

use delta_sdk::prelude::*;
use serde_json::Value;

/// The bounty's specification.
#[derive(Deserialize)]
struct Spec {
    expected: Value,
}

struct JsonEquals;

impl Verifier for JsonEquals {
    type Spec = Spec;
    type Submission = Value;

    fn verify(spec: Spec, submission: Value) -> Verdict {
        if submission == spec.expected {
            info!("verdict: passed");
            Verdict::pass("submission matches the expected document")
        } else {
            info!("verdict: failed");
            Verdict::fail("submission differs from the expected document")
        }
    }
}

delta_sdk::export_verifier!(JsonEquals);
