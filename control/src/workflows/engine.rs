//! Moving a workflow run forward: every change happens in one database
//! transaction with the event that tells of it, and the end of a step's run
//! is recorded in the transaction that ends the run ([`step_ended`], called
//! by `crate::run_end`), so a crash of the control plane or a node between
//! two steps neither runs a finished step again nor loses the next one.
//!
//! A step's attempt is an ordinary run (trigger `workflow`, the workflow
//! run's id), queued `pending` for the dispatcher: delivered at least once,
//! retried while no node takes it, re-queued when its node is lost. An
//! attempt that ends other than `completed` (or goes `dead`, or outlives the
//! step's `timeout_ms`) is retried up to the step's `retries`, then fails
//! the step and the workflow run. A run whose step is no longer waiting for
//! it (timed out, cancelled, the workflow ended) is ignored when it ends; a
//! timed-out attempt a node has is also stopped there (the dispatcher asks
//! its node, [`Expired::delivered`]).

use std::collections::BTreeMap;

use delta_node_api::RunUsage;
use serde_json::{Value, json};
use sqlx::AnyConnection;
use sqlx::Row as _;

use super::definition::{Definition, Step, step_input, workflow_output};
use crate::db::Db;
use crate::dispatch::sql::{PendingRun, insert_pending};
use crate::webhooks::EventType;
use crate::webhooks::RunEnd;

/// A running workflow run, locked by the transaction that read it.
pub(super) struct Locked {
    pub id: String,
    pub tenant_id: String,
    pub workflow_id: String,
    pub definition: Definition,
    pub input: Value,
    pub tokens_used: i64,
}

fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: what.to_owned(),
        source: Box::new(e),
    })
}

/// Lock workflow run `id` if it is `running` (a write, so concurrent step
/// ends of one workflow take turns on PostgreSQL too).
pub(super) async fn lock_running(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Locked>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "UPDATE workflow_runs SET event_seq = event_seq WHERE id = $1 AND status = 'running' \
         RETURNING tenant_id, workflow_id, definition, input, tokens_used",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let definition: String = row.try_get("definition")?;
    let input: String = row.try_get("input")?;
    Ok(Some(Locked {
        id: id.to_owned(),
        tenant_id: row.try_get("tenant_id")?,
        workflow_id: row.try_get("workflow_id")?,
        definition: decode(&definition, "definition")?,
        input: decode(&input, "input")?,
        tokens_used: row.try_get("tokens_used")?,
    }))
}

/// Append an event to workflow run `id`'s stream.
pub(super) async fn event(
    conn: &mut AnyConnection,
    id: &str,
    kind: &str,
    data: Value,
    now: i64,
) -> Result<(), sqlx::Error> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE workflow_runs SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO workflow_events (workflow_run_id, seq, event_type, data, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(seq)
    .bind(kind)
    .bind(data.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The outputs of the completed steps of workflow run `id`.
async fn outputs(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<BTreeMap<String, Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT step_id, output FROM workflow_steps \
         WHERE workflow_run_id = $1 AND status = 'completed'",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let output: Option<String> = r.try_get("output")?;
            let output = output.map(|o| decode(&o, "output")).transpose()?;
            Ok((r.try_get("step_id")?, output.unwrap_or(Value::Null)))
        })
        .collect()
}

/// Queue attempt `attempt` of `step`.
async fn start_step(
    conn: &mut AnyConnection,
    wf: &Locked,
    step: &Step,
    attempt: i64,
    outputs: &BTreeMap<String, Value>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let run_id = format!("run_{}", uuid::Uuid::now_v7().simple());
    let input = step_input(step, &wf.input, outputs).to_string();
    insert_pending(
        conn,
        &PendingRun {
            run_id: &run_id,
            tenant_id: &wf.tenant_id,
            agent_id: &step.agent,
            trigger: ("workflow", &wf.id),
            input: &input,
        },
        now,
    )
    .await?;
    let deadline = step
        .timeout_ms
        .map(|t| now.saturating_add(i64::try_from(t).unwrap_or(i64::MAX)));
    sqlx::query(
        "UPDATE workflow_steps SET status = 'running', attempts = $1, run_id = $2, \
         started_at_ms = $3, deadline_ms = $4, error = NULL \
         WHERE workflow_run_id = $5 AND step_id = $6",
    )
    .bind(attempt)
    .bind(&run_id)
    .bind(now)
    .bind(deadline)
    .bind(&wf.id)
    .bind(&step.id)
    .execute(&mut *conn)
    .await?;
    crate::dispatch::queued_in_transaction(&run_id, now);
    event(
        conn,
        &wf.id,
        "step.started",
        json!({ "step": step.id, "attempt": attempt, "run_id": run_id }),
        now,
    )
    .await
}

/// Start every waiting step whose steps before it all completed; finish the
/// workflow run when every step has.
pub(super) async fn advance(
    conn: &mut AnyConnection,
    wf: &Locked,
    now: i64,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("SELECT step_id, status FROM workflow_steps WHERE workflow_run_id = $1")
        .bind(&wf.id)
        .fetch_all(&mut *conn)
        .await?;
    let mut status = BTreeMap::new();
    for r in &rows {
        status.insert(
            r.try_get::<String, _>("step_id")?,
            r.try_get::<String, _>("status")?,
        );
    }
    let done = |id: &str| status.get(id).is_some_and(|s| s == "completed");
    let outputs = outputs(conn, &wf.id).await?;
    if wf.definition.steps.iter().all(|s| done(&s.id)) {
        let output = workflow_output(&wf.definition, &wf.input, &outputs);
        sqlx::query(
            "UPDATE workflow_runs SET status = 'completed', output = $1, finished_at_ms = $2 \
             WHERE id = $3",
        )
        .bind(output.to_string())
        .bind(now)
        .bind(&wf.id)
        .execute(&mut *conn)
        .await?;
        notify(
            conn,
            wf,
            EventType::WorkflowCompleted,
            ("output", output.clone()),
            now,
        )
        .await?;
        return event(
            conn,
            &wf.id,
            "workflow.completed",
            json!({ "output": output }),
            now,
        )
        .await;
    }
    for step in &wf.definition.steps {
        let waiting = status.get(&step.id).is_some_and(|s| s == "waiting");
        if waiting && step.after.iter().all(|d| done(d)) {
            start_step(conn, wf, step, 1, &outputs, now).await?;
        }
    }
    Ok(())
}

/// Stop run `run_id` from being delivered if no node has it yet (a step
/// nobody waits for any more); one already out runs to its end, ignored.
async fn abandon(
    conn: &mut AnyConnection,
    run_id: &str,
    why: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let stopped = sqlx::query(
        "UPDATE run_queue SET state = 'dead', last_error = $1, updated_at_ms = $2 \
         WHERE run_id = $3 AND state = 'pending'",
    )
    .bind(why)
    .bind(now)
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    if stopped.rows_affected() == 1 {
        sqlx::query(
            "UPDATE runs SET status = 'dead', finished_at_ms = $1 \
             WHERE id = $2 AND status NOT IN ('finished', 'dead')",
        )
        .bind(now)
        .bind(run_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(stopped.rows_affected() == 1)
}

/// Queue the result webhook of workflow run `wf`, which `conn` (the
/// transaction that ended it) has just ended: sent iff that end commits.
/// The whole run's tokens go with it; `detail` is its output or error.
async fn notify(
    conn: &mut AnyConnection,
    wf: &Locked,
    event: EventType,
    detail: (&str, Value),
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut data = json!({
        "workflow_run_id": wf.id,
        "workflow_id": wf.workflow_id,
        "status": event.as_str().trim_start_matches("workflow."),
        "tokens_used": wf.tokens_used,
    });
    data[detail.0] = detail.1;
    crate::webhooks::enqueue(conn, &wf.tenant_id, event, data, now).await
}

/// End workflow run `wf` as `status` (`failed`, `cancelled`) with `error`:
/// its waiting and running steps are cancelled and their undelivered runs
/// abandoned.
pub(super) async fn end(
    conn: &mut AnyConnection,
    wf: &Locked,
    status: &str,
    error: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let open: Vec<Option<String>> = sqlx::query_scalar(
        "UPDATE workflow_steps SET status = 'cancelled', finished_at_ms = $1 \
         WHERE workflow_run_id = $2 AND status IN ('waiting', 'running') RETURNING run_id",
    )
    .bind(now)
    .bind(&wf.id)
    .fetch_all(&mut *conn)
    .await?;
    for run in open.into_iter().flatten() {
        abandon(conn, &run, &format!("workflow_{status}"), now).await?;
    }
    sqlx::query(
        "UPDATE workflow_runs SET status = $1, error = $2, finished_at_ms = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(error)
    .bind(now)
    .bind(&wf.id)
    .execute(&mut *conn)
    .await?;
    let webhook = if status == "cancelled" {
        EventType::WorkflowCancelled
    } else {
        EventType::WorkflowFailed
    };
    notify(conn, wf, webhook, ("error", json!(error)), now).await?;
    event(
        conn,
        &wf.id,
        &format!("workflow.{status}"),
        json!({ "error": error }),
        now,
    )
    .await
}

/// Attempt `attempts` of step `step_id` failed (`why`): try again if the
/// step has retries left, else fail it and the workflow run.
async fn attempt_failed(
    conn: &mut AnyConnection,
    wf: &Locked,
    step_id: &str,
    attempts: i64,
    why: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let Some(step) = wf.definition.step(step_id) else {
        return end(
            conn,
            wf,
            "failed",
            &format!("step {step_id} is not in the definition"),
            now,
        )
        .await;
    };
    if attempts <= i64::from(step.retries) {
        event(
            conn,
            &wf.id,
            "step.retrying",
            json!({ "step": step_id, "attempt": attempts, "error": why }),
            now,
        )
        .await?;
        let outputs = outputs(conn, &wf.id).await?;
        return start_step(conn, wf, step, attempts + 1, &outputs, now).await;
    }
    sqlx::query(
        "UPDATE workflow_steps SET status = 'failed', error = $1, finished_at_ms = $2 \
         WHERE workflow_run_id = $3 AND step_id = $4",
    )
    .bind(why)
    .bind(now)
    .bind(&wf.id)
    .bind(step_id)
    .execute(&mut *conn)
    .await?;
    event(
        conn,
        &wf.id,
        "step.failed",
        json!({ "step": step_id, "attempt": attempts, "error": why }),
        now,
    )
    .await?;
    end(
        conn,
        wf,
        "failed",
        &format!("step {step_id} failed: {why}"),
        now,
    )
    .await
}

/// Tokens a run's usage says it spent (LLM input and output, messages).
fn tokens_of(usage: &RunUsage) -> i64 {
    let llm: u64 = usage
        .llm
        .values()
        .map(|t| t.input_tokens.saturating_add(t.output_tokens))
        .sum();
    let messages: u64 = usage.messages.values().map(|m| m.tokens).sum();
    i64::try_from(llm.saturating_add(messages)).unwrap_or(i64::MAX)
}

/// What a finished step's run produced: its output (JSON), or why it
/// counts as failed.
fn step_result(end: &RunEnd<'_>, stored_outcome: Option<&str>) -> Result<Value, String> {
    let outcome = match end {
        RunEnd::Dead(why) => return Err(format!("undeliverable: {why}")),
        RunEnd::Finished(Some(outcome)) => (*outcome).clone(),
        RunEnd::Finished(None) => stored_outcome
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or(Value::Null),
    };
    let status = outcome["status"].as_str().unwrap_or("unknown");
    if status != "completed" {
        let detail = outcome["code"]
            .as_str()
            .or_else(|| outcome["message"].as_str())
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(format!("the run ended {status}{detail}"));
    }
    let Some(text) = outcome["output"].as_str() else {
        return Err("output_omitted: the run's output is over 16 KiB, too large to pass on".into());
    };
    serde_json::from_str(text).map_err(|_| "the run's output is not JSON".to_owned())
}

/// Run `run_id` of `tenant` ended as `end`, in the transaction that
/// recorded that (`conn`): if it is a workflow step's current attempt, the
/// step completes (and the steps it unblocks are queued) or the attempt
/// fails. Anything else: nothing happens.
pub async fn step_ended(
    conn: &mut AnyConnection,
    tenant: &str,
    run_id: &str,
    end_as: &RunEnd<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT workflow_run_id, step_id FROM workflow_steps \
         WHERE run_id = $1 AND tenant_id = $2 AND status = 'running'",
    )
    .bind(run_id)
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let wf_id: String = row.try_get("workflow_run_id")?;
    let step_id: String = row.try_get("step_id")?;
    let Some(mut wf) = lock_running(conn, &wf_id).await? else {
        return Ok(());
    };
    // Read again under the workflow's lock: on PostgreSQL the read above
    // may predate a commit that moved the step on meanwhile (its attempt
    // timed out and the next one started, `expire`), and acting on it would
    // complete the step with a stale attempt's output or start a third.
    let Some(attempts) = sqlx::query_scalar::<_, i64>(
        "SELECT attempts FROM workflow_steps WHERE workflow_run_id = $1 AND step_id = $2 \
         AND run_id = $3 AND status = 'running'",
    )
    .bind(&wf_id)
    .bind(&step_id)
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let run = sqlx::query("SELECT outcome, usage FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await?;
    let (stored_outcome, usage) = match &run {
        Some(r) => (
            r.try_get::<Option<String>, _>("outcome")?,
            r.try_get::<Option<String>, _>("usage")?,
        ),
        None => (None, None),
    };
    let spent = usage
        .and_then(|u| serde_json::from_str::<RunUsage>(&u).ok())
        .map_or(0, |u| tokens_of(&u));
    if spent > 0 {
        wf.tokens_used = wf.tokens_used.saturating_add(spent);
        sqlx::query("UPDATE workflow_runs SET tokens_used = $1 WHERE id = $2")
            .bind(wf.tokens_used)
            .bind(&wf.id)
            .execute(&mut *conn)
            .await?;
    }
    match step_result(end_as, stored_outcome.as_deref()) {
        Ok(output) => {
            sqlx::query(
                "UPDATE workflow_steps SET status = 'completed', output = $1, \
                 finished_at_ms = $2 WHERE workflow_run_id = $3 AND step_id = $4 \
                 AND run_id = $5 AND status = 'running'",
            )
            .bind(output.to_string())
            .bind(now)
            .bind(&wf.id)
            .bind(&step_id)
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
            event(
                conn,
                &wf.id,
                "step.completed",
                json!({ "step": step_id, "attempt": attempts, "run_id": run_id,
                        "output": output }),
                now,
            )
            .await?;
            let over = wf
                .definition
                .token_budget
                .is_some_and(|b| u64::try_from(wf.tokens_used).unwrap_or(0) > b);
            if over {
                return end(conn, &wf, "failed", "token_budget_exceeded", now).await;
            }
            advance(conn, &wf, now).await
        }
        Err(why) => attempt_failed(conn, &wf, &step_id, attempts, &why, now).await,
    }
}

/// What [`expire`] did.
#[derive(Debug, Default)]
pub struct Expired {
    /// Attempts timed out.
    pub attempts: usize,
    /// Their runs that had left the run queue (on a node, or being handed
    /// to one), as (tenant, run id): the caller asks their nodes to stop
    /// them, after the commits.
    pub delivered: Vec<(String, String)>,
}

/// Fail the attempts that outlived their step's `timeout_ms` (each in its
/// own transaction): retried or failing their workflow run. An attempt
/// still in the run queue ends there; one a node has is reported in
/// [`Expired::delivered`] for the caller to stop on its node.
pub async fn expire(db: &Db, now: i64) -> Result<Expired, sqlx::Error> {
    let due = sqlx::query(
        "SELECT workflow_run_id, step_id, run_id FROM workflow_steps \
         WHERE status = 'running' AND deadline_ms < $1 LIMIT 100",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut expired = Expired::default();
    for row in &due {
        let wf_id: String = row.try_get("workflow_run_id")?;
        let step_id: String = row.try_get("step_id")?;
        let run_id: Option<String> = row.try_get("run_id")?;
        let mut tx = db.begin().await?;
        // The workflow first, then its step, in the order `step_ended`
        // locks them (the other order could deadlock on PostgreSQL).
        let Some(wf) = lock_running(&mut tx, &wf_id).await? else {
            continue;
        };
        // Still that attempt, still late: another replica may have been first.
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE workflow_steps SET deadline_ms = NULL WHERE workflow_run_id = $1 \
             AND step_id = $2 AND run_id = $3 AND status = 'running' AND deadline_ms < $4 \
             RETURNING attempts",
        )
        .bind(&wf_id)
        .bind(&step_id)
        .bind(&run_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(attempts) = attempts else {
            continue;
        };
        let mut delivered = None;
        if let Some(run) = &run_id
            && !abandon(&mut tx, run, "workflow_step_timed_out", now).await?
        {
            delivered = Some((wf.tenant_id.clone(), run.clone()));
        }
        attempt_failed(&mut tx, &wf, &step_id, attempts, "timeout", now).await?;
        tx.commit().await?;
        expired.attempts += 1;
        expired.delivered.extend(delivered);
    }
    if expired.attempts > 0 {
        crate::dispatch::wake();
    }
    Ok(expired)
}
