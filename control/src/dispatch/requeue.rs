//! Node loss: the runs of a node that is down go back to the queue, or
//! fail, as their agent's `node_loss` policy says.

use crate::db::Db;

/// What [`requeue_lost`] did with the unfinished runs of lost nodes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Back to `pending`, for the agent's new node.
    pub requeued: Vec<String>,
    /// `dead` with `last_error` `node_lost` (agents with `node_loss`
    /// `fail`).
    pub failed: Vec<String>,
}

/// For every run out for delivery whose node is down or gone: when its
/// agent's `node_loss` is `fail`, the run is `dead` (`node_lost`);
/// otherwise it is put back to `pending` (due now), so that the dispatcher
/// delivers it to the agent's new node (the monitor moves the agent). Runs
/// the node already finished (their usage arrived) are `finished` in the
/// queue and stay. One transaction, so a run is failed or re-queued, never
/// both. Idempotent: the dispatcher calls it at every pass.
pub async fn requeue_lost(db: &Db, now: i64) -> Result<Lost, sqlx::Error> {
    const LOST: &str = "SELECT r.id FROM runs r WHERE r.status NOT IN ('finished', 'dead') \
         AND r.node_id NOT IN (SELECT id FROM nodes WHERE status = 'up')";
    let mut tx = db.begin().await?;
    let failed: Vec<String> = sqlx::query_scalar(&format!(
        "UPDATE run_queue SET state = 'dead', not_before_ms = $1, updated_at_ms = $1, \
             last_error = 'node_lost' \
         WHERE state = 'dispatched' AND run_id IN ({LOST}) \
         AND agent_id IN (SELECT id FROM agents WHERE node_loss = 'fail') \
         RETURNING run_id"
    ))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut endpoints = crate::webhooks::Endpoints::default();
    for run in &failed {
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE runs SET status = 'dead', finished_at_ms = $1 \
             WHERE id = $2 AND status <> 'finished' RETURNING tenant_id",
        )
        .bind(now)
        .bind(run)
        .fetch_optional(&mut *tx)
        .await?;
        // Its end, told to the tenant's result webhooks with the change
        // that makes it dead (as a dead-lettered run's is).
        if let Some(tenant) = tenant {
            crate::run_end::ended(
                &mut tx,
                &mut endpoints,
                &tenant,
                run,
                crate::webhooks::RunEnd::Dead("node_lost"),
                now,
            )
            .await?;
        }
    }
    let requeued = sqlx::query_scalar(&format!(
        "UPDATE run_queue SET state = 'pending', not_before_ms = $1, updated_at_ms = $1, \
             last_error = 'node_lost' \
         WHERE state = 'dispatched' AND run_id IN ({LOST}) \
         RETURNING run_id"
    ))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Lost { requeued, failed })
}
