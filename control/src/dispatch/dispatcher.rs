//! The dispatcher: a task per replica delivering due queue rows.

use std::time::Duration;

use delta_node_api::RunStatus;
use futures_util::StreamExt as _;
use serde_json::Value;

use super::{QueuedRun, RunQueue, backoff_ms};
use crate::app::AppState;
use crate::db::now_ms;
use crate::nodeclient::{DEFAULT_RUN_TIMEOUT, NodeClient};

/// Rows claimed per pass.
const BATCH: i64 = 32;
/// Node calls in flight at once per replica.
const DELIVERIES_AT_ONCE: usize = 16;

/// Deliver due runs every `[runs] poll_ms` until aborted.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let queue = state.run_queue.clone();
        let mut tick =
            tokio::time::interval(Duration::from_millis(state.config.runs.poll_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = super::woken() => {}
            }
            if let Err(e) = pass(&state, &queue).await {
                tracing::warn!(error = %e, "run dispatcher");
            }
        }
    })
}

/// One pass: re-queue the runs of lost nodes, then deliver what is due.
pub async fn pass(state: &AppState, queue: &impl RunQueue) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let lost = super::requeue::requeue_lost(&state.db, now).await?;
    for run in &lost.requeued {
        tracing::warn!(run = %run, "its node is lost: run re-queued");
    }
    let due: Vec<(String, i64)> = lost.requeued.into_iter().map(|r| (r, now)).collect();
    queue.announce(&due).await;
    for run in lost.failed {
        tracing::warn!(run = %run, "its node is lost: run dead (the agent's node_loss is fail)");
    }
    let stranded = super::requeue::recover_stranded(state, now).await?;
    queue
        .announce(&stranded.into_iter().map(|r| (r, now)).collect::<Vec<_>>())
        .await;
    let expired = crate::workflows::engine::expire(&state.db, now).await?;
    if expired.attempts > 0 {
        tracing::info!(
            expired = expired.attempts,
            "workflow step attempts timed out"
        );
    }
    // Off the dispatch loop: each is a call to a node, which may not answer.
    for (tenant, run) in expired.delivered {
        let state = state.clone();
        tokio::spawn(async move {
            crate::workflows::stop_step_run_patiently(&state, &tenant, &run).await;
        });
    }
    // Queued by the expiries just now, or by transactions since the last
    // pass.
    queue.announce(&super::take_queued()).await;
    loop {
        let claimed = queue.claim_due(now_ms(), BATCH).await?;
        let full = claimed.len() as i64 == BATCH;
        // Concurrently: a delivery is a node call (the node queues the run
        // and answers), so one at a time bounded a burst (10,000 schedules
        // on one minute) by the round trip rather than by the node.
        // (A loop, not `stream::iter(..).map(..)`: that closure's future is
        // not provably Send for every lifetime, rustc's HRTB limit.)
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut first_error = None;
        for run in &claimed {
            if in_flight.len() >= DELIVERIES_AT_ONCE
                && let Some(Err(e)) = in_flight.next().await
            {
                first_error.get_or_insert(e);
            }
            in_flight.push(deliver_claimed(state, queue, run));
        }
        while let Some(done) = in_flight.next().await {
            if let Err(e) = done {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if !full {
            return Ok(());
        }
    }
}

/// Deliver run `run_id` at once if it is `pending` and due (a run queued
/// this moment, e.g. by an agent's message), rather than at the next pass;
/// whoever claims the row first delivers it. Errors are logged: the row
/// stays in the table for the passes.
pub async fn deliver_now(state: &AppState, run_id: &str) {
    let claimed = match state.run_queue.table().claim_one(run_id, now_ms()).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(run = run_id, error = %e, "claiming a run to deliver it at once");
            return;
        }
    };
    if let Some(run) = claimed
        && let Err(e) = deliver_claimed(state, &state.run_queue, &run).await
    {
        tracing::warn!(run = run_id, error = %e, "recording a failed delivery");
    }
}

/// Deliver a claimed row; a failure is retried after a backoff, or the run
/// is `dead` after `[runs] max_deliveries`.
async fn deliver_claimed(
    state: &AppState,
    queue: &impl RunQueue,
    run: &QueuedRun,
) -> Result<(), sqlx::Error> {
    let Err(error) = deliver(state, run).await else {
        return Ok(());
    };
    let cfg = &state.config.runs;
    let now = now_ms();
    let retry_at = (run.deliveries < i64::from(cfg.max_deliveries)).then(|| {
        let wait = backoff_ms(run.deliveries, cfg.retry_base_ms, cfg.retry_max_ms);
        now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX))
    });
    if retry_at.is_none() {
        tracing::warn!(run = %run.run_id, deliveries = run.deliveries, %error, "run dead");
    }
    queue.failed(&run.run_id, &error, retry_at, now).await
}

/// Deliver `run` to its agent's current node. `Err` is the reason, kept as
/// the row's `last_error`.
async fn deliver(state: &AppState, run: &QueuedRun) -> Result<(), String> {
    let agent = crate::agents::load_agent(state, &run.tenant_id, &run.agent_id)
        .await
        .map_err(|e| format!("{}: {}", e.code, e.message))?;
    let node = crate::agents::hosting_node(state, &agent)
        .await
        .map_err(|e| format!("{}: {}", e.code, e.message))?;
    let input: Value = serde_json::from_str(&run.input).map_err(|e| format!("input: {e}"))?;
    // Moved to the node first: were this node lost during the call, the
    // run is re-queued from it (not from the node it left).
    sqlx::query(
        "UPDATE runs SET node_id = $1, status = $2 \
         WHERE id = $3 AND tenant_id = $4 AND status NOT IN ('finished', 'dead')",
    )
    .bind(&node.id)
    .bind(RunStatus::Queued.as_str())
    .bind(&run.run_id)
    .bind(&run.tenant_id)
    .execute(state.db.pool())
    .await
    .map_err(|e| format!("database: {e}"))?;
    let timeout = agent
        .limits
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_RUN_TIMEOUT);
    let client = NodeClient::new(state);
    match client
        .create_run(&node, &agent.id, &run.run_id, &input, false, timeout)
        .await
    {
        Ok(_) => {
            tracing::info!(run = %run.run_id, node = %node.id, deliveries = run.deliveries, "run delivered");
            Ok(())
        }
        Err(e) => {
            if e.is_not_found() {
                // The node lost the deployment: give it back for the next
                // delivery.
                if let Err(e) = crate::agents::redeploy_current(state, &node, &agent.id).await {
                    tracing::warn!(node = %node.id, agent = %agent.id, error = %e, "redeploying");
                }
            }
            Err(e.to_string())
        }
    }
}
