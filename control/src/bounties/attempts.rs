//! Attempts: an agent owner dispatches its agent at a bounty. The control
//! plane starts a run of the agent on its node (`runs::start_run`, the path
//! every run takes) with the input `{"bounty": {id, title, description,
//! spec}}`, and stores the attempt with the run's id. The run's output is
//! kept by the node only, so the sweep's step [`advance`] asks the node
//! about each running attempt's run; once finished, a completed run's
//! output becomes a submission (verified like any other) and any other end
//! fails the attempt with the reason. Everything needed is in the attempt's
//! row, so a restart loses nothing; turning a run into a submission is one
//! conditional update of that row in the submission's transaction, so two
//! passes (or two replicas) submit it once.

use delta_http::ApiError;
use delta_node_api::RunStatus;
use serde_json::{Value, json};
use sqlx::AnyConnection;

use crate::db::{new_id, now_ms};
use crate::nodeclient::NodeClient;
use crate::state::AppState;

use super::claims::hold_in;
use super::model::*;
use super::store::{Actor, db_err, get_in, get_visible, in_write};
use super::submit::{check_agent, check_open, check_size, insert_submission_in};
use super::verify::verify_submission;

/// Running attempts looked at per pass.
const BATCH: i64 = 16;

/// What `POST /v1/bounties/{id}/attempts` starts.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptStarted {
    /// The attempt (`GET /v1/attempts/{id}`).
    pub attempt_id: String,
    /// The claim it works under.
    pub claim_id: String,
    /// The agent's run (`GET /v1/runs/{id}`).
    pub run_id: String,
}

/// Dispatch `agent_id` (the actor's) at bounty `bounty_id`: claim if
/// needed, start the run, store the attempt.
pub(super) async fn start(
    state: &AppState,
    actor: Actor<'_>,
    bounty_id: &str,
    agent_id: &str,
    now: i64,
) -> Result<AttemptStarted, ApiError> {
    let b = get_visible(&state.db, actor.tenant_id, bounty_id).await?;
    check_open(&b, actor.tenant_id, now)?;
    check_agent(&state.db, actor.tenant_id, agent_id).await?;
    let agent = crate::agents::load_agent(state, actor.tenant_id, agent_id).await?;
    let claim = in_write(&state.db, async |c: &mut AnyConnection| {
        hold_in(c, actor, bounty_id, agent_id, now).await
    })
    .await?;
    let input = json!({ "bounty": { "id": b.id, "title": b.title, "description": b.description,
                                    "spec": b.spec } });
    // Named before the run starts, so that the run can say what started it.
    let id = new_id(ATTEMPT_PREFIX);
    let trigger = crate::runs::RunTrigger::of("bounty_attempt", &id);
    let started = crate::runs::start_run(state, &agent, &input, false, trigger).await?;
    sqlx::query(
        "INSERT INTO bounty_attempts (id, bounty_id, claim_id, tenant_id, user_id, agent_id, \
         run_id, status, reason, submission_id, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', NULL, NULL, $8, $8)",
    )
    .bind(&id)
    .bind(bounty_id)
    .bind(&claim.id)
    .bind(actor.tenant_id)
    .bind(actor.user_id)
    .bind(agent_id)
    .bind(started.run_id())
    .bind(now)
    .execute(state.db.pool())
    .await
    .map_err(db_err)?;
    Ok(AttemptStarted {
        attempt_id: id,
        claim_id: claim.id,
        run_id: started.run_id().to_owned(),
    })
}

/// Attempt `id` of `tenant`'s (404 otherwise).
pub(super) async fn get(state: &AppState, tenant: &str, id: &str) -> Result<Attempt, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM bounty_attempts WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(state.db.pool())
    .await
    .map_err(db_err)?;
    row.as_ref()
        .map(attempt_from_row)
        .transpose()?
        .ok_or_else(|| ApiError::not_found("attempt"))
}

/// Fail a running attempt with `reason` (no submission).
async fn fail(state: &AppState, id: &str, reason: &str, now: i64) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE bounty_attempts SET status = 'failed', reason = $2, updated_at_ms = $3 \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(state.db.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The submission payload of a run's outcome, or why there is none.
fn output_of(outcome: &Value) -> Result<Value, String> {
    let status = outcome.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "completed" {
        let detail = outcome
            .get("message")
            .and_then(Value::as_str)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Err(format!("the run ended with {status}{detail}"));
    }
    match outcome.get("output") {
        // The node hands the agent's output over as its JSON text; text
        // that is not JSON is submitted as a string.
        Some(Value::String(text)) => {
            Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())))
        }
        Some(other) => Ok(other.clone()),
        None => Err("the run completed without output".to_owned()),
    }
}

/// Look at running attempt `a` once: nothing yet, failed, or submitted
/// (and verified).
async fn look(state: &AppState, a: &Attempt) -> Result<(), ApiError> {
    let now = now_ms();
    let b = {
        let mut conn = state.db.pool().acquire().await.map_err(db_err)?;
        get_in(&mut conn, &a.bounty_id)
            .await?
            .ok_or_else(|| ApiError::not_found("bounty"))?
    };
    if b.status != "open" || b.deadline_ms <= now {
        return fail(state, &a.id, &format!("the bounty is {}", b.status), now).await;
    }
    let node_id: Option<String> =
        sqlx::query_scalar("SELECT node_id FROM runs WHERE id = $1 AND tenant_id = $2")
            .bind(&a.run_id)
            .bind(&a.tenant_id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(db_err)?;
    let Some(node_id) = node_id else {
        return fail(state, &a.id, "the run is not known", now).await;
    };
    // A node that is down may come back with the run: look again later.
    let Some(node) = crate::nodes::up_node(state, &node_id)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(());
    };
    let record = match NodeClient::new(state).get_run(&node, &a.run_id).await {
        Ok(r) if r.tenant_id == a.tenant_id && r.agent_id == a.agent_id => r,
        Ok(_) => return fail(state, &a.id, "the node answered another run", now).await,
        Err(e) if e.is_not_found() => {
            return fail(state, &a.id, "the node no longer has the run", now).await;
        }
        Err(e) => {
            tracing::warn!(attempt = %a.id, error = %e, "asking a node about an attempt's run");
            return Ok(());
        }
    };
    if record.status != RunStatus::Finished {
        return Ok(());
    }
    let payload = match record.outcome.as_ref().map(output_of) {
        Some(Ok(p)) => p.to_string(),
        Some(Err(reason)) => return fail(state, &a.id, &reason, now).await,
        None => return fail(state, &a.id, "the run finished without an outcome", now).await,
    };
    if let Err(e) = check_size(state, &payload) {
        return fail(state, &a.id, &e.message, now).await;
    }
    let actor = Actor {
        tenant_id: &a.tenant_id,
        user_id: &a.user_id,
        request_id: &a.id,
    };
    let submitted = in_write(&state.db, async |c: &mut AnyConnection| {
        let mine = sqlx::query(
            "UPDATE bounty_attempts SET status = 'submitted', updated_at_ms = $2 \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(&a.id)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(db_err)?
        .rows_affected();
        if mine != 1 {
            return Ok(None);
        }
        let claim = hold_in(c, actor, &a.bounty_id, &a.agent_id, now).await?;
        let id = insert_submission_in(c, actor, &b, &claim.id, &a.agent_id, &payload, now).await?;
        sqlx::query("UPDATE bounty_attempts SET submission_id = $2 WHERE id = $1")
            .bind(&a.id)
            .bind(&id)
            .execute(&mut *c)
            .await
            .map_err(db_err)?;
        Ok(Some(id))
    })
    .await;
    match submitted {
        Ok(Some(id)) => {
            // Not verified now (a crash, no node): the submission is
            // pending, which the sweep's verification retry picks up.
            verify_submission(state, &id).await?;
            Ok(())
        }
        Ok(None) => Ok(()),
        // The bounty closed or filled up in between.
        Err(e) if e.status.is_client_error() => fail(state, &a.id, &e.message, now).await,
        Err(e) => Err(e),
    }
}

/// One pass at a time in this process: a pass calls nodes and verifies, so
/// it runs beside the sweep, not in it.
static ADVANCING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The sweep's step: look at running attempts (unless a pass is still
/// running); how many were handed to a pass.
pub async fn advance(state: &AppState) -> Result<u64, sqlx::Error> {
    let Ok(turn) = ADVANCING.try_lock() else {
        return Ok(0);
    };
    let rows = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM bounty_attempts WHERE status = 'running' \
         ORDER BY updated_at_ms LIMIT {BATCH}"
    ))
    .fetch_all(state.db.pool())
    .await?;
    let attempts: Vec<Attempt> = rows
        .iter()
        .filter_map(|r| attempt_from_row(r).ok())
        .collect();
    let handed = attempts.len() as u64;
    if handed > 0 {
        let state = state.clone();
        tokio::spawn(async move {
            let _turn = turn;
            for a in attempts {
                if let Err(e) = look(&state, &a).await {
                    tracing::warn!(attempt = %a.id, code = e.code, "advancing an attempt");
                }
            }
        });
    }
    Ok(handed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_runs_output_is_the_payload() {
        let ok = json!({ "status": "completed", "output": "{\"answer\":42}" });
        assert_eq!(output_of(&ok), Ok(json!({ "answer": 42 })));
        let text = json!({ "status": "completed", "output": "plain" });
        assert_eq!(output_of(&text), Ok(json!("plain")));
        let trap = json!({ "status": "trap", "message": "unreachable" });
        assert!(
            output_of(&trap)
                .expect_err("a trap")
                .contains("trap: unreachable")
        );
        let none = json!({ "status": "completed" });
        assert!(
            output_of(&none)
                .expect_err("no output")
                .contains("without output")
        );
    }
}
