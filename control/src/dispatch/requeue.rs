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
    // `fail` agents are left out here too, not only by the state the
    // statement above left: on PostgreSQL each statement of a READ
    // COMMITTED transaction reads anew, so a node marked down between the
    // two (the monitor, concurrently) showed this one a run the first had
    // not seen, and a `fail` agent's run was re-queued. Such a run is
    // failed by the next pass instead.
    let requeued = sqlx::query_scalar(&format!(
        "UPDATE run_queue SET state = 'pending', not_before_ms = $1, updated_at_ms = $1, \
             last_error = 'node_lost' \
         WHERE state = 'dispatched' AND run_id IN ({LOST}) \
         AND agent_id NOT IN (SELECT id FROM agents WHERE node_loss = 'fail') \
         RETURNING run_id"
    ))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Lost { requeued, failed })
}

/// A `dispatched` row untouched this long is checked with its node
/// ([`recover_stranded`]).
pub const STRANDED_AFTER_MS: i64 = 30_000;

/// Rows checked per pass.
const STRANDED_BATCH: i64 = 16;

/// Runs a replica claimed (or accepted inline) and then died before its
/// node took them: the row is `dispatched`, the node (up) has no such run,
/// and nothing else would deliver it. Each `dispatched` row of an
/// unfinished run untouched for [`STRANDED_AFTER_MS`] is checked with its
/// node: a run the node answers 404 for goes back to `pending` (due now);
/// one the node holds is left for another [`STRANDED_AFTER_MS`]. A node
/// that does not answer is left to [`requeue_lost`] (the monitor marks it
/// down). Returns the runs put back.
pub async fn recover_stranded(
    state: &crate::app::AppState,
    now: i64,
) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Row as _;
    let rows = sqlx::query(
        "SELECT q.run_id, r.node_id, n.url FROM run_queue q \
         JOIN runs r ON r.id = q.run_id \
         JOIN nodes n ON n.id = r.node_id AND n.status = 'up' \
         WHERE q.state = 'dispatched' AND q.updated_at_ms < $1 \
         AND r.status NOT IN ('finished', 'dead') \
         ORDER BY q.updated_at_ms LIMIT $2",
    )
    .bind(now - STRANDED_AFTER_MS)
    .bind(STRANDED_BATCH)
    .fetch_all(state.db.pool())
    .await?;
    let client = crate::nodeclient::NodeClient::new(state);
    let mut recovered = Vec::new();
    for row in &rows {
        let run_id: String = row.try_get("run_id")?;
        let node = crate::nodeclient::Target {
            id: row.try_get("node_id")?,
            url: row.try_get("url")?,
        };
        let (state_to, why) = match client.get_run(&node, &run_id).await {
            Err(e) if e.is_not_found() => ("pending", Some("stranded: the node never took it")),
            Ok(_) => ("dispatched", None),
            // No answer: the heartbeat decides (`requeue_lost`).
            Err(_) => continue,
        };
        // Conditional on the row being as it was read: a usage report or
        // another replica may have moved it meanwhile.
        let moved = sqlx::query(
            "UPDATE run_queue SET state = $1, not_before_ms = $2, updated_at_ms = $2, \
             last_error = COALESCE($3, last_error) \
             WHERE run_id = $4 AND state = 'dispatched' AND updated_at_ms < $5",
        )
        .bind(state_to)
        .bind(now)
        .bind(why)
        .bind(&run_id)
        .bind(now - STRANDED_AFTER_MS)
        .execute(state.db.pool())
        .await?;
        if moved.rows_affected() == 1 && why.is_some() {
            tracing::warn!(run = %run_id, node = %node.id, "a dispatched run its node never took: re-queued");
            recovered.push(run_id);
        }
    }
    Ok(recovered)
}
