//! Node loss: the runs of a node that is down go back to the queue.

use crate::db::Db;

/// Put back to `pending` (due now) every run out for delivery whose node is
/// down or gone, so that the dispatcher delivers it to the agent's new node
/// (the monitor moves the agent). Runs the node already finished (their
/// usage arrived) are `finished` in the queue and stay. Returns the run ids
/// re-queued. Idempotent: the monitor calls it at every tick.
pub async fn requeue_lost(db: &Db, now: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE run_queue SET state = 'pending', not_before_ms = $1, updated_at_ms = $1, \
             last_error = 'node_lost' \
         WHERE state = 'dispatched' AND run_id IN ( \
             SELECT r.id FROM runs r WHERE r.status NOT IN ('finished', 'dead') \
             AND r.node_id NOT IN (SELECT id FROM nodes WHERE status = 'up')) \
         RETURNING run_id",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await
}
