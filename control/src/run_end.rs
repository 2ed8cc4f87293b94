//! What the transaction that ends a run (to `finished` or `dead`) does
//! besides changing the run's row, in the same transaction: queue its
//! result webhook (`crate::webhooks`) and, when the run is a workflow
//! step's attempt, record the step's end and queue the steps it unblocks
//! (`crate::workflows`). Every place that ends a run calls [`ended`]: usage
//! reports, a node's answer, a run dead-lettered by the queue or failed
//! with its lost node. The caller calls `crate::dispatch::wake` after
//! committing, so the runs queued here are delivered at once.

use sqlx::AnyConnection;

use crate::webhooks::{Endpoints, RunEnd};

/// Run `run_id` of `tenant` has just ended as `end` in `conn`'s
/// transaction.
pub async fn ended(
    conn: &mut AnyConnection,
    endpoints: &mut Endpoints,
    tenant: &str,
    run_id: &str,
    end: RunEnd<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    crate::webhooks::run_ended(conn, endpoints, tenant, run_id, end, now).await?;
    crate::workflows::engine::step_ended(conn, tenant, run_id, &end, now).await
}
