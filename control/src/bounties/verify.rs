//! Verification on a node: the bounty's verifier component runs on the
//! submission through the node's `POST /v1/verifications` (fuel, memory and
//! deadline limits; no capability beyond `log`), and its outcome is judged
//! here. Only a well-formed verdict counts; a trap, a timeout, an error or
//! an answer that is not a verdict is `verification_failed` with the
//! reason, and never approves. No node reachable: the submission stays
//! `pending_verification` (the sweep retries it, as does
//! `POST /v1/submissions/{id}/verify`).

use std::time::Duration;

use bytes::Bytes;
use delta_node_api::{AgentLimits, VerificationRequest};
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row as _;

use crate::db::now_ms;
use crate::nodeclient::{DEFAULT_RUN_TIMEOUT, NodeCallError, NodeClient};
use crate::state::AppState;

use super::model::*;
use super::store::{Verification, approve, record_verification};

/// Nodes tried before a submission is left pending.
const ATTEMPTS: usize = 3;
/// A pending submission is retried by the sweep at most this often.
pub const RETRY_MS: i64 = 5_000;

/// The verdict the `verifier` world returns, as the runtime serialises it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    passed: bool,
    score_milli: u32,
    reasons: Vec<String>,
}

/// Judge a node's outcome: a verdict, or why there is none.
pub fn judge(outcome: &Value) -> Verification {
    let status = outcome.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "completed" {
        let detail = outcome
            .get("message")
            .and_then(Value::as_str)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Verification::Failed(format!("the verifier ended with {status}{detail}"));
    }
    let Some(output) = outcome.get("output").and_then(Value::as_str) else {
        return Verification::Failed("the verifier completed without output".to_owned());
    };
    match serde_json::from_str::<Verdict>(output) {
        Ok(v) if v.score_milli <= 1000 => Verification::Verdict {
            passed: v.passed,
            score_milli: i64::from(v.score_milli),
            reasons: v.reasons,
        },
        Ok(v) => Verification::Failed(format!(
            "the verdict's score_milli {} is over 1000",
            v.score_milli
        )),
        Err(e) => Verification::Failed(format!("the verifier's answer is not a verdict: {e}")),
    }
}

/// Run the verification on a node (uploading the verifier first).
async fn run_on_node(state: &AppState, bounty: &Bounty, payload: String) -> Verification {
    let nodes = match crate::nodes::candidates(state).await {
        Ok(nodes) => nodes,
        Err(e) => return Verification::Unavailable(format!("listing nodes: {e}")),
    };
    if nodes.is_empty() {
        return Verification::Unavailable("no node is available".to_owned());
    }
    let path = state
        .components_dir
        .join(format!("{}.wasm", bounty.verifier));
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => Bytes::from(b),
        Err(e) => return Verification::Failed(format!("the verifier component is gone: {e}")),
    };
    let l = &bounty.verifier_limits;
    let req = VerificationRequest {
        tenant_id: bounty.tenant_id.clone(),
        component: bounty.verifier.clone(),
        spec: bounty.spec.to_string(),
        submission: payload,
        limits: AgentLimits {
            fuel: l.fuel,
            memory_bytes: l.memory_bytes,
            timeout_ms: l.timeout_ms,
        },
    };
    let timeout = l
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_RUN_TIMEOUT);
    let client = NodeClient::new(state);
    let mut last = String::new();
    for node in nodes.iter().take(ATTEMPTS) {
        let answer = async {
            client
                .put_component(node, &bounty.verifier, &bounty.tenant_id, bytes.clone())
                .await?;
            client.verify(node, &req, timeout).await
        }
        .await;
        match answer {
            Ok(result) => return judge(&result.outcome),
            // The node refused the component or the documents: the
            // verifier's (or the submission's) fault, on any node.
            Err(e @ NodeCallError::Refused { .. }) if e.is_unprocessable() => {
                return Verification::Failed(e.to_string());
            }
            Err(e) => {
                tracing::warn!(node = %node.id, error = %e, "verifying a submission");
                last = e.to_string();
            }
        }
    }
    Verification::Unavailable(format!("no node verified it: {last}"))
}

/// Verify submission `id` (still `pending_verification`) and store the
/// result; with the `auto` policy, approve it if its verdict passed.
/// Answers what was found.
pub async fn verify_submission(
    state: &AppState,
    id: &str,
) -> Result<Verification, delta_http::ApiError> {
    let row = sqlx::query(
        "SELECT s.payload, s.bounty_id FROM bounty_submissions s \
         WHERE s.id = $1 AND s.status = 'pending_verification'",
    )
    .bind(id)
    .fetch_optional(state.db.pool())
    .await
    .map_err(delta_http::ApiError::internal)?;
    let Some(row) = row else {
        return Ok(Verification::Unavailable(
            "not pending verification".to_owned(),
        ));
    };
    let payload: String = row
        .try_get("payload")
        .map_err(delta_http::ApiError::internal)?;
    let bounty_id: String = row
        .try_get("bounty_id")
        .map_err(delta_http::ApiError::internal)?;
    let bounty = sqlx::query(&format!(
        "SELECT {BOUNTY_COLUMNS} FROM bounties WHERE id = $1"
    ))
    .bind(&bounty_id)
    .fetch_one(state.db.pool())
    .await
    .map_err(delta_http::ApiError::internal)?;
    let bounty = bounty_from_row(&bounty)?;
    let found = run_on_node(state, &bounty, payload).await;
    let stored = record_verification(&state.db, id, &found, now_ms()).await?;
    if stored
        && bounty.policy == Policy::Auto
        && matches!(found, Verification::Verdict { passed: true, .. })
    {
        // The first passing verdict wins; a later one finds the bounty
        // completed (409), which is the expected end of its race.
        if let Err(e) = approve(&state.db, None, id, state.config.bounty_fee_bps, now_ms()).await {
            tracing::info!(submission = %id, code = e.code, "auto-approval did not apply");
        }
    }
    Ok(found)
}

/// One retry pass at a time in this process: a pass calls nodes and may
/// wait for a verifier's deadline, so it runs beside the sweep rather than
/// in it (lease expiry must not wait for a slow verifier).
static RETRYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The sweep's step: start retrying the submissions no node could verify
/// yet, unless a pass is still running; how many were handed to it. A
/// verification stores its result only on a submission still pending, so
/// passes on two replicas at once cost work, never correctness.
pub async fn retry_pending(state: &AppState, now: i64) -> Result<u64, sqlx::Error> {
    let Ok(turn) = RETRYING.try_lock() else {
        return Ok(0);
    };
    let ids = super::store::pending_verifications(&state.db, now, RETRY_MS).await?;
    let handed = ids.len() as u64;
    if handed > 0 {
        let state = state.clone();
        tokio::spawn(async move {
            let _turn = turn;
            for id in ids {
                if let Err(e) = verify_submission(&state, &id).await {
                    tracing::warn!(submission = %id, code = e.code, "retrying a verification");
                }
            }
        });
    }
    Ok(handed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_well_formed_verdict_counts() {
        let ok = json!({ "status": "completed",
            "output": r#"{"passed":true,"score_milli":1000,"reasons":["ok"]}"# });
        assert_eq!(
            judge(&ok),
            Verification::Verdict {
                passed: true,
                score_milli: 1000,
                reasons: vec!["ok".into()]
            }
        );
        for (bad, why) in [
            (json!({ "status": "out-of-fuel" }), "out-of-fuel"),
            (
                json!({ "status": "trap", "message": "unreachable" }),
                "unreachable",
            ),
            (json!({ "status": "deadline" }), "deadline"),
            (
                json!({ "status": "completed", "output": "{\"passed\":true}" }),
                "not a verdict",
            ),
            (
                json!({ "status": "completed", "output": "garbage" }),
                "not a verdict",
            ),
            (
                json!({ "status": "completed",
                        "output": r#"{"passed":true,"score_milli":5000,"reasons":[]}"# }),
                "over 1000",
            ),
            (json!({ "status": "completed" }), "without output"),
            (json!("nonsense"), "ended with"),
        ] {
            match judge(&bad) {
                Verification::Failed(reason) => assert!(reason.contains(why), "{bad}: {reason}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
