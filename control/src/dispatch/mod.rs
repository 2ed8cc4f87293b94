//! The durable run queue (issue 13): every run the control plane accepts is
//! a row of `run_queue`, so that a run survives the node it was given to.
//!
//! - [`start_run`](crate::runs::start_run) inserts the row already
//!   `dispatched` and delivers inline (the answers of `POST
//!   /v1/agents/{id}/runs` are unchanged; a run the node refused is
//!   forgotten, as before).
//! - [`requeue`]: the runs of a node that is down (not heart-beating, as the
//!   monitor marks it) go back to `pending`, for the agent's new node (the
//!   monitor moves the agent), or are `dead` with `node_lost` when the
//!   agent's `node_loss` policy is `fail` (effects that must not happen
//!   twice); nothing waits for the lost node to return.
//! - [`dispatcher`]: a task per replica claims due `pending` rows ([`sql`]:
//!   `FOR UPDATE SKIP LOCKED` on PostgreSQL, a conditional `UPDATE` on
//!   SQLite) and delivers each to the agent's current node under the same
//!   run id; a refusal (429, 503, unreachable, the agent paused or not yet
//!   moved) is retried with exponential backoff and jitter, and after
//!   `[runs] max_deliveries` the run is `dead` with the last error
//!   (`GET /v1/runs?status=dead`, `POST /v1/runs/{id}/retry`).
//!
//! Delivery is at least once: a run re-queued from a node that was only
//! slow may run twice. The guest's `task.run-id` is the same on every
//! delivery (its idempotency key), a node answers a run id it already holds
//! with that run, and the first finish wins (usage is recorded once per run
//! id).

pub mod dispatcher;
pub mod requeue;
pub mod sql;
pub mod streams;

use std::future::Future;
use std::sync::Mutex;

/// Runs queued inside a transaction that ends another run (a workflow's
/// next steps), waiting to be announced by this replica's dispatcher.
static QUEUED: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());
/// Wakes this replica's dispatcher before its next tick.
static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Remember that run `run_id` was made `pending`, due at `due_ms`, by a
/// transaction not yet committed: this replica's dispatcher announces it
/// (with Redis) and claims it at its next pass, which [`wake`] brings
/// forward once the transaction is committed. A run whose transaction rolls
/// back is announced for nothing: the table refuses its claim.
pub fn queued_in_transaction(run_id: &str, due_ms: i64) {
    QUEUED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((run_id.to_owned(), due_ms));
}

/// Start this replica's dispatcher's next pass now (after committing runs
/// recorded with [`queued_in_transaction`]).
pub fn wake() {
    WAKE.notify_one();
}

/// Wait for [`wake`].
pub(crate) async fn woken() {
    WAKE.notified().await;
}

/// The runs [`queued_in_transaction`] recorded since the last call.
pub(crate) fn take_queued() -> Vec<(String, i64)> {
    std::mem::take(&mut *QUEUED.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A queue row to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRun {
    /// The run (its id everywhere: queue, runs table, node, guest).
    pub run_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
    /// The task input (JSON text).
    pub input: String,
    /// Deliveries so far, this claim included.
    pub deliveries: i64,
}

/// What the dispatcher needs of a queue: [`sql::SqlRunQueue`] (the table
/// alone) or [`streams::RedisRunQueue`] (signals on a Redis stream, the
/// table deciding); [`Queue`] is whichever the configuration chose.
pub trait RunQueue: Send + Sync {
    /// Record a run accepted now, already being delivered inline.
    fn enqueue_dispatched(
        &self,
        run: &QueuedRun,
        now: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Claim up to `limit` due `pending` rows (each counted as one more
    /// delivery); a row is claimed by one replica only.
    fn claim_due(
        &self,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<QueuedRun>, sqlx::Error>> + Send;
    /// These rows were made `pending`, due at the given times, by someone
    /// else than [`RunQueue::failed`] (re-queued from a lost node, retried
    /// through the API). Best effort: a queue that misses it finds the row
    /// in the table later.
    fn announce(&self, runs: &[(String, i64)]) -> impl Future<Output = ()> + Send;
    /// A delivery failed: `pending` again at `retry_at`, or `dead` (None),
    /// with `error` (a dead run reads `status: "dead"`).
    fn failed(
        &self,
        run_id: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// The run queue this replica uses: the table alone, or with Redis
/// Streams when `redis_url` is configured.
#[derive(Clone)]
pub enum Queue {
    /// `run_queue` polled with `SKIP LOCKED` (PostgreSQL) or a conditional
    /// `UPDATE` (SQLite).
    Sql(sql::SqlRunQueue),
    /// Signals on a Redis stream with a consumer group.
    Redis(streams::RedisRunQueue),
}

impl Queue {
    /// The queue for `db`, with Redis at `redis_url` when one is given.
    pub fn open(db: crate::db::Db, redis_url: Option<&str>) -> Result<Self, streams::QueueError> {
        let table = sql::SqlRunQueue::new(db);
        Ok(match redis_url {
            None => Self::Sql(table),
            Some(url) => Self::Redis(streams::RedisRunQueue::open(table, url)?),
        })
    }
}

impl Queue {
    /// The table that decides every claim.
    pub fn table(&self) -> &sql::SqlRunQueue {
        match self {
            Self::Sql(q) => q,
            Self::Redis(q) => q.table(),
        }
    }
}

impl RunQueue for Queue {
    async fn enqueue_dispatched(&self, run: &QueuedRun, now: i64) -> Result<(), sqlx::Error> {
        match self {
            Self::Sql(q) => q.enqueue_dispatched(run, now).await,
            Self::Redis(q) => q.enqueue_dispatched(run, now).await,
        }
    }

    async fn claim_due(&self, now: i64, limit: i64) -> Result<Vec<QueuedRun>, sqlx::Error> {
        match self {
            Self::Sql(q) => q.claim_due(now, limit).await,
            Self::Redis(q) => q.claim_due(now, limit).await,
        }
    }

    async fn announce(&self, runs: &[(String, i64)]) {
        match self {
            Self::Sql(q) => q.announce(runs).await,
            Self::Redis(q) => q.announce(runs).await,
        }
    }

    async fn failed(
        &self,
        run_id: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        match self {
            Self::Sql(q) => q.failed(run_id, error, retry_at, now).await,
            Self::Redis(q) => q.failed(run_id, error, retry_at, now).await,
        }
    }
}

/// The wait before delivery number `deliveries + 1`: `base * 2^(n-1)`,
/// capped at `max`, plus up to a quarter of it as jitter so that replicas
/// (and runs re-queued together) do not retry in step.
pub fn backoff_ms(deliveries: i64, base: u64, max: u64) -> u64 {
    let exp = u32::try_from(deliveries.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let wait = base.saturating_mul(1u64 << exp).min(max);
    let jitter = if wait >= 4 {
        rand::random_range(0..wait / 4)
    } else {
        0
    };
    wait.saturating_add(jitter)
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        for (n, lo) in [(1, 100), (2, 200), (3, 400), (4, 800), (9, 1_000)] {
            let wait = backoff_ms(n, 100, 1_000);
            assert!(wait >= lo && wait < lo + lo / 4 + 1, "{n}: {wait}");
        }
    }
}
