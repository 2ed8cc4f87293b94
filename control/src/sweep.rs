//! The sweep: periodic clean-up of data with a lifetime.
//!
//! Every [`SWEEP_INTERVAL`] one task ([`spawn`]) runs [`sweep_once`]:
//! - expired budget leases return their tokens to the agent (a node that
//!   died holding a lease does not keep its tokens);
//! - pending token requests older than `token_request_ttl_secs` expire;
//! - budget accounts still in a past month roll over to the current one;
//! - stored `Idempotency-Key` responses are hard-deleted after
//!   `idempotency_ttl_secs`, or after `run_output_ttl_secs` if that is
//!   shorter: a stored response can hold a run's output (`?wait=true`), and
//!   run outputs must not outlive their retention (seed 004). On SQLite the
//!   database runs with `secure_delete`, so deleted rows are overwritten in
//!   the file, not only unlinked, and the WAL is checkpointed and truncated
//!   after a pass that deleted some;
//! - open bounties past their deadline are refunded (their escrow voided)
//!   and submissions no node could verify yet are retried; running bounty
//!   attempts whose run finished become submissions (`bounties`);
//! - components no agent or open bounty uses are deleted
//!   `[quotas] component_gc_grace_secs` after their upload, row and file
//!   (`quotas::collect_components`);
//! - inbound webhook signatures past their replay window are forgotten
//!   (`triggers`);
//! - retention: leases that ended, decided token requests, usage records,
//!   usage batches and schedule fires are deleted after
//!   `record_retention_secs`, message
//!   attempts (recipients included) after `audit_retention_secs`, at most
//!   [`RETENTION_CHUNK`] rows per table per pass so that a backlog never
//!   makes one long transaction. Daily usage aggregates and budget entries
//!   (the append-only ledger) are kept.
//!
//! Run outputs and logs themselves live on the node that ran them, which
//! hard-deletes them after the same retention (see `delta-node`); the
//! control plane keeps only each run's outcome name and usage.
//!
//! # One sweeper at a time
//! Several control-plane replicas may share one PostgreSQL database. Each
//! pass takes a session-level advisory lock with `pg_try_advisory_lock` on
//! one pooled connection and skips the pass if another replica holds it;
//! the lock is released on the same connection afterwards (or dropped with
//! the connection if releasing fails, which ends the session and so the
//! lock). Every step is also safe to repeat (conditional updates), so the
//! lock saves duplicated work and contention rather than guarding
//! correctness. SQLite is one process's database: a process-local mutex
//! serves.

use std::time::Duration;

use sqlx::Row as _;
use tokio::sync::Mutex;

use crate::app::AppState;
use crate::db::{Backend, now_ms};

/// How often the sweep runs. Lease expiry depends on it: a lease is
/// returned at most this long after it expired.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The advisory-lock key of the sweep ("deltaSWP" as an integer); any
/// constant works as long as nothing else in the database uses it.
pub const SWEEP_LOCK_KEY: i64 = 0x6465_6c74_6153_5750;

/// Most rows deleted from one table in one pass (a backlog drains at this
/// many rows a second per table).
pub const RETENTION_CHUNK: i64 = 5_000;

/// Tables with a retention: (table, primary key, condition on the cutoff
/// `$1`). Each condition matches an index of migration 0007 (0012 for
/// schedule fires, 0035 for agent messages).
const RECORDS: [(&str, &str, &str); 7] = [
    (
        "budget_leases",
        "id",
        // A provisional lease (expired, its node never reported) stays in
        // view for operators until its node reports.
        "status <> 'active' AND expires_at_ms < $1 \
         AND NOT (provisional_spent > 0 AND returned_at_ms IS NULL)",
    ),
    (
        "token_requests",
        "id",
        "status <> 'pending' AND created_at_ms < $1",
    ),
    ("usage_records", "run_id", "received_at_ms < $1"),
    ("usage_batches", "batch_id", "received_at_ms < $1"),
    ("schedule_fires", "id", "created_at_ms < $1"),
    ("stripe_events", "id", "received_at_ms < $1"),
    ("agent_messages", "id", "created_at_ms < $1"),
];
const AUDIT: (&str, &str, &str) = ("message_log", "id", "at_ms < $1");

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Leases expired (tokens returned).
    pub leases_expired: u64,
    /// Token requests expired.
    pub requests_expired: u64,
    /// Budget accounts rolled over to a new month.
    pub accounts_rolled_over: u64,
    /// Stored idempotent responses deleted.
    pub idempotency_deleted: u64,
    /// Rows past their retention deleted (all tables).
    pub retention_deleted: u64,
    /// Open bounties past their deadline refunded.
    pub bounties_expired: u64,
    /// Bounty submissions waiting for a node handed to a retry pass.
    pub verifications_retried: u64,
    /// Unused components deleted (`quotas::collect_components`).
    pub components_collected: u64,
}

static LOCAL: Mutex<()> = Mutex::const_new(());

/// One pass at `now` (milliseconds). `None`: another replica holds the
/// lock (PostgreSQL only).
pub async fn sweep_once(state: &AppState, now: i64) -> Result<Option<SweepReport>, sqlx::Error> {
    match state.db.backend() {
        Backend::Sqlite => {
            // Passes are short: wait for the one running rather than skip.
            let _guard = LOCAL.lock().await;
            steps(state, now).await.map(Some)
        }
        Backend::Postgres => {
            let mut conn = state.db.pool().acquire().await?;
            let got: i32 =
                sqlx::query("SELECT CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END AS got")
                    .bind(SWEEP_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get("got")?;
            if got != 1 {
                return Ok(None);
            }
            let result = steps(state, now).await;
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(SWEEP_LOCK_KEY)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                // Closing the session releases its advisory locks.
                tracing::warn!(error = %e, "releasing the sweep lock; closing its connection");
                drop(conn.detach());
            }
            result.map(Some)
        }
    }
}

/// Each step runs even when another failed: a failing roll-over must not
/// hold back lease expiry, nor either of them the deletion that retention
/// depends on. The first error is answered after all steps ran.
async fn steps(state: &AppState, now: i64) -> Result<SweepReport, sqlx::Error> {
    let config = &state.config;
    let secs_ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let db = &state.db;
    let mut first_error = None;
    let mut keep = |step: &str, result: Result<u64, sqlx::Error>| match result {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(step, error = %e, "sweep step failed");
            first_error.get_or_insert(e);
            0
        }
    };
    let leases_expired = keep("leases", crate::budgets::expire_leases(db, now).await);
    let requests_expired = keep(
        "token requests",
        crate::budgets::expire_requests(db, now, secs_ms(config.token_request_ttl_secs)).await,
    );
    let accounts_rolled_over = keep("roll-over", crate::budgets::roll_over_due(db, now).await);
    let bounties_expired = keep("bounties", crate::bounties::expire_due(db, now).await);
    let verifications_retried = keep(
        "verifications",
        crate::bounties::retry_pending(state, now).await,
    );
    keep(
        "bounty attempts",
        crate::bounties::advance_attempts(state).await,
    );
    keep(
        "payment calls",
        crate::payments::ops::run_due(state, now).await,
    );
    let retention = config.idempotency_ttl_secs.min(config.run_output_ttl_secs);
    let idempotency_deleted = keep(
        "idempotency",
        crate::idempotency::sweep_expired(db, now, secs_ms(retention)).await,
    );
    let components_collected = keep(
        "components",
        crate::quotas::collect_components(state, now).await,
    );
    keep(
        "webhook signatures",
        crate::triggers::sweep(state, now).await,
    );
    // Registrations whose emailed token expired unused.
    keep(
        "pending registrations",
        sqlx::query("DELETE FROM pending_registrations WHERE expires_at_ms < $1")
            .bind(now)
            .execute(db.pool())
            .await
            .map(|r| r.rows_affected()),
    );
    // Ended sessions whose access tokens have all expired.
    keep(
        "revoked sessions",
        sqlx::query("DELETE FROM revoked_sessions WHERE expires_at_ms < $1")
            .bind(now)
            .execute(db.pool())
            .await
            .map(|r| r.rows_affected()),
    );
    let mut retention_deleted = 0;
    let tables = RECORDS
        .iter()
        .map(|t| (t, config.record_retention_secs))
        .chain([(&AUDIT, config.audit_retention_secs)]);
    for (&(table, key, condition), secs) in tables {
        let cutoff = now.saturating_sub(secs_ms(secs));
        retention_deleted += keep(table, delete_chunk(db, table, key, condition, cutoff).await);
    }
    if (idempotency_deleted > 0 || retention_deleted > 0) && db.backend() == Backend::Sqlite {
        // secure_delete zeroes the rows in their pages, but earlier copies
        // of those pages stay in the WAL until a checkpoint copies the WAL
        // back and truncates it. Best effort: readers in the middle of a
        // transaction make it partial; the next deleting pass retries.
        let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(db.pool())
            .await
            .map(|_| 0);
        keep("checkpoint", checkpoint);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(SweepReport {
            leases_expired,
            requests_expired,
            accounts_rolled_over,
            idempotency_deleted,
            retention_deleted,
            bounties_expired,
            verifications_retried,
            components_collected,
        }),
    }
}

/// Delete up to [`RETENTION_CHUNK`] rows of `table` matching `condition`.
async fn delete_chunk(
    db: &crate::db::Db,
    table: &str,
    key: &str,
    condition: &str,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    // Only constants of this module are spliced in.
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN \
         (SELECT {key} FROM {table} WHERE {condition} LIMIT {RETENTION_CHUNK})"
    );
    Ok(sqlx::query(&sql)
        .bind(cutoff)
        .execute(db.pool())
        .await?
        .rows_affected())
}

/// Run [`sweep_once`] every [`SWEEP_INTERVAL`] until aborted.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep_once(&state, now_ms()).await {
                Ok(Some(report)) if report != SweepReport::default() => {
                    tracing::info!(?report, "sweep");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed; retrying next tick"),
            }
        }
    })
}
