//! [`RunQueue`] on the control plane's database (SQLite or PostgreSQL).

use sqlx::Row as _;

use super::{QueuedRun, RunQueue};
use crate::db::{Backend, Db};

/// The `run_queue` table.
#[derive(Clone)]
pub struct SqlRunQueue {
    db: Db,
}

impl SqlRunQueue {
    /// The queue in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl RunQueue for SqlRunQueue {
    async fn enqueue_dispatched(&self, run: &QueuedRun, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO run_queue (run_id, tenant_id, agent_id, input, deliveries, state, \
             not_before_ms, last_error, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'dispatched', $6, NULL, $6) \
             ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(&run.run_id)
        .bind(&run.tenant_id)
        .bind(&run.agent_id)
        .bind(&run.input)
        .bind(run.deliveries)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn claim_due(&self, now: i64, limit: i64) -> Result<Vec<QueuedRun>, sqlx::Error> {
        self.claim(now, now, limit).await
    }

    async fn announce(&self, _runs: &[(String, i64)]) {
        // The table is the queue: a pending row is found by `claim_due`.
    }

    async fn failed(
        &self,
        run_id: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let (state, not_before) = match retry_at {
            Some(at) => ("pending", at),
            None => ("dead", now),
        };
        // Only a row still out for delivery: a usage report may have
        // finished the run meanwhile.
        let changed = sqlx::query(
            "UPDATE run_queue SET state = $1, not_before_ms = $2, last_error = $3, \
             updated_at_ms = $4 WHERE run_id = $5 AND state = 'dispatched'",
        )
        .bind(state)
        .bind(not_before)
        .bind(error)
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 1 && retry_at.is_none() {
            let tenant: Option<String> = sqlx::query_scalar(
                "UPDATE runs SET status = 'dead', finished_at_ms = $1 \
                 WHERE id = $2 AND status <> 'finished' RETURNING tenant_id",
            )
            .bind(now)
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?;
            // Its end, told to the tenant's result webhooks with the
            // change that makes it dead.
            if let Some(tenant) = tenant {
                crate::run_end::ended(
                    &mut tx,
                    &mut crate::webhooks::Endpoints::default(),
                    &tenant,
                    run_id,
                    crate::webhooks::RunEnd::Dead(error),
                    now,
                )
                .await?;
            }
        }
        tx.commit().await?;
        crate::dispatch::wake();
        Ok(())
    }
}

impl SqlRunQueue {
    /// Claim up to `limit` `pending` rows due by `due_by` (each counted as
    /// one more delivery, stamped `now`); a row is claimed by one replica
    /// only.
    pub(crate) async fn claim(
        &self,
        due_by: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<QueuedRun>, sqlx::Error> {
        // One statement either way: on PostgreSQL the rows another replica
        // is claiming are skipped (not waited for); SQLite has one writer,
        // and an UPDATE is a write from its first step (a transaction that
        // read first could not upgrade to write under a concurrent one).
        // The `state = 'pending'` condition makes a claim exclusive on both.
        let pick = match self.db.backend() {
            Backend::Postgres => {
                "SELECT run_id FROM run_queue WHERE state = 'pending' AND not_before_ms <= $2 \
                 ORDER BY not_before_ms, run_id LIMIT $3 FOR UPDATE SKIP LOCKED"
            }
            Backend::Sqlite => {
                "SELECT run_id FROM run_queue WHERE state = 'pending' AND not_before_ms <= $2 \
                 ORDER BY not_before_ms, run_id LIMIT $3"
            }
        };
        let rows = sqlx::query(&format!(
            "UPDATE run_queue SET state = 'dispatched', deliveries = deliveries + 1, \
             updated_at_ms = $1 \
             WHERE state = 'pending' AND run_id IN ({pick}) \
             RETURNING run_id, tenant_id, agent_id, input, deliveries"
        ))
        .bind(now)
        .bind(due_by)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(queued_run).collect()
    }

    /// Claim run `run_id` if it is `pending` and due by `now` (what a
    /// queue signal names is checked here: the table decides).
    pub(crate) async fn claim_one(
        &self,
        run_id: &str,
        now: i64,
    ) -> Result<Option<QueuedRun>, sqlx::Error> {
        let row = sqlx::query(
            "UPDATE run_queue SET state = 'dispatched', deliveries = deliveries + 1, \
             updated_at_ms = $1 \
             WHERE run_id = $2 AND state = 'pending' AND not_before_ms <= $1 \
             RETURNING run_id, tenant_id, agent_id, input, deliveries",
        )
        .bind(now)
        .bind(run_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(queued_run).transpose()
    }

    /// When `run_id` is due, if it is `pending`.
    pub(crate) async fn pending_due(&self, run_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT not_before_ms FROM run_queue WHERE run_id = $1 AND state = 'pending'",
        )
        .bind(run_id)
        .fetch_optional(self.db.pool())
        .await
    }
}

fn queued_run(row: &sqlx::any::AnyRow) -> Result<QueuedRun, sqlx::Error> {
    Ok(QueuedRun {
        run_id: row.try_get("run_id")?,
        tenant_id: row.try_get("tenant_id")?,
        agent_id: row.try_get("agent_id")?,
        input: row.try_get("input")?,
        deliveries: row.try_get("deliveries")?,
    })
}

/// What [`insert_pending`] stores: a run the control plane starts by
/// itself (an agent's message, a workflow's step), due now.
pub(crate) struct PendingRun<'a> {
    /// The new run's id.
    pub run_id: &'a str,
    /// Its tenant.
    pub tenant_id: &'a str,
    /// The agent to run.
    pub agent_id: &'a str,
    /// What started it (`runs.trigger_kind`, `trigger_id`).
    pub trigger: (&'a str, &'a str),
    /// The task input (JSON text).
    pub input: &'a str,
}

/// Store run `run` `queued` with its `pending` queue row, due `now`, in
/// `conn`'s transaction; the dispatcher delivers it to the agent's node.
pub(crate) async fn insert_pending(
    conn: &mut sqlx::AnyConnection,
    run: &PendingRun<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let node_id: Option<String> =
        sqlx::query_scalar("SELECT node_id FROM agents WHERE id = $1 AND tenant_id = $2")
            .bind(run.agent_id)
            .bind(run.tenant_id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    sqlx::query(
        "INSERT INTO runs (id, tenant_id, agent_id, node_id, status, created_at_ms, \
         trigger_kind, trigger_id) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)",
    )
    .bind(run.run_id)
    .bind(run.tenant_id)
    .bind(run.agent_id)
    .bind(node_id.unwrap_or_default())
    .bind(now)
    .bind(run.trigger.0)
    .bind(run.trigger.1)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO run_queue (run_id, tenant_id, agent_id, input, deliveries, state, \
         not_before_ms, last_error, updated_at_ms) \
         VALUES ($1, $2, $3, $4, 0, 'pending', $5, NULL, $5)",
    )
    .bind(run.run_id)
    .bind(run.tenant_id)
    .bind(run.agent_id)
    .bind(run.input)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The run's end is known: its queue row stops being delivered. Called in
/// the transaction that records the end (the runs row and its result
/// webhook), so the three change together.
pub(crate) async fn mark_finished(
    conn: &mut sqlx::AnyConnection,
    run_id: &str,
    tenant_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE run_queue SET state = 'finished' \
         WHERE run_id = $1 AND tenant_id = $2 AND state <> 'finished'",
    )
    .bind(run_id)
    .bind(tenant_id)
    .execute(conn)
    .await?;
    Ok(())
}
