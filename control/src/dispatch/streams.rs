//! [`RunQueue`] on Redis Streams, for replicas that share a Redis
//! (`redis_url`): pending runs are signalled on a stream that every
//! replica reads through one consumer group, so each signal goes to one
//! replica and nobody polls the table for work.
//!
//! The `run_queue` table stays the record (the API reads `deliveries`,
//! `last_error` and `dead` from it) and the judge: a signal only names a
//! run, and the replica that reads it claims the row with the same
//! conditional `UPDATE ... WHERE state = 'pending'` the table queue uses,
//! so a signal delivered twice, or a run also found by the sweep below,
//! is claimed once.
//!
//! - A run made `pending` (a failed delivery with a retry time, a run
//!   re-queued from a lost node, a retry through the API) is added to the
//!   sorted set `delta:runs:delayed`, scored by when it is due.
//! - Each pass moves the due members onto the stream `delta:runs` (one
//!   Lua script, so two replicas never move one member twice), takes the
//!   entries other replicas read but never acknowledged for
//!   [`ABANDONED_MS`] (`XAUTOCLAIM`: a replica that died mid-pass), reads
//!   new entries (`XREADGROUP`), claims each run in the table, and
//!   acknowledges and deletes the entry.
//! - Nothing is lost with Redis: a row `pending` and due for longer than
//!   [`SWEEP_AFTER_MS`] is claimed from the table directly (Redis flushed
//!   or unreachable, a signal never sent), by a sweep every
//!   [`SWEEP_EVERY_MS`] (the table is not polled at each pass). While
//!   Redis does not answer, that sweep runs at every pass: it is the
//!   queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use redis::AsyncCommands as _;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::sql::SqlRunQueue;
use super::{QueuedRun, RunQueue};

/// The stream of due runs.
pub const STREAM: &str = "delta:runs";
/// Runs waiting for their time, scored by it (ms since the epoch).
pub const DELAYED: &str = "delta:runs:delayed";
/// The consumer group every replica reads through.
pub const GROUP: &str = "dispatchers";
/// An entry read by a replica and not acknowledged for this long is taken
/// by another.
pub const ABANDONED_MS: u64 = 30_000;
/// A `pending` row due for this long without a signal is claimed from the
/// table.
pub const SWEEP_AFTER_MS: i64 = 10_000;
/// How often a replica sweeps the table for such rows while Redis answers.
pub const SWEEP_EVERY_MS: i64 = 5_000;
/// Bound on each Redis call: the dispatcher falls back to the table rather
/// than wait on an unreachable Redis.
const REDIS_DEADLINE: Duration = Duration::from_secs(2);

/// Moves the due members of the delayed set (KEYS[1]) onto the stream
/// (KEYS[2]) atomically: ARGV[1] now, ARGV[2] at most this many.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, run in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'run', run)
end
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
return #due
";

/// Why the Redis queue cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Not a Redis URL (its text is not repeated: it may hold a password).
    #[error("redis_url is not a valid Redis URL: {0}")]
    Url(String),
    /// The connection manager could not be made.
    #[error("run queue on Redis: {0}")]
    Redis(String),
}

/// The run queue on Redis Streams (see the module doc).
#[derive(Clone)]
pub struct RedisRunQueue {
    table: SqlRunQueue,
    conn: redis::aio::ConnectionManager,
    /// This replica's name in the consumer group.
    consumer: String,
    promote: redis::Script,
    /// When this replica last swept the table.
    swept_at_ms: Arc<AtomicI64>,
}

impl RedisRunQueue {
    /// The table this queue signals for.
    pub fn table(&self) -> &SqlRunQueue {
        &self.table
    }

    /// The queue over `table`, signalled through the Redis at `url`
    /// (connected lazily: a Redis that is down at start is retried).
    pub fn open(table: SqlRunQueue, url: &str) -> Result<Self, QueueError> {
        let client =
            redis::Client::open(url).map_err(|e| QueueError::Url(format!("{:?}", e.kind())))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_DEADLINE))
            .set_response_timeout(Some(REDIS_DEADLINE))
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| QueueError::Redis(e.to_string()))?;
        Ok(Self {
            table,
            conn,
            consumer: format!("replica-{}", uuid::Uuid::now_v7().simple()),
            promote: redis::Script::new(PROMOTE),
            swept_at_ms: Arc::new(AtomicI64::new(0)),
        })
    }

    /// This replica's consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Run ids signalled to this replica now: due delayed runs moved onto
    /// the stream, entries abandoned by other replicas, new entries. Each
    /// comes with its stream entry id, to acknowledge once claimed.
    async fn signals(&self, now: i64, limit: i64) -> redis::RedisResult<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let count = usize::try_from(limit.max(1)).unwrap_or(1);
        let _moved: i64 = self
            .promote
            .key(DELAYED)
            .key(STREAM)
            .arg(now)
            .arg(count)
            .invoke_async(&mut conn)
            .await?;
        // The group is made on first use (and again after a flush).
        let made: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(STREAM)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = made
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e);
        }
        let abandoned: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(STREAM)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(ABANDONED_MS)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let entries = abandoned
            .claimed
            .into_iter()
            .chain(fresh.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids));
        Ok(entries.map(signal).collect())
    }

    /// Done with stream entries `ids` (claimed, or not claimable).
    async fn acknowledge(&self, ids: &[String]) -> redis::RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("XACK")
            .arg(STREAM)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(STREAM)
            .arg(ids)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// Add `runs` (id, due at) to the delayed set.
    async fn delay(&self, runs: &[(String, i64)]) -> redis::RedisResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let members: Vec<(i64, &str)> = runs.iter().map(|(id, at)| (*at, id.as_str())).collect();
        conn.zadd_multiple::<_, _, _, ()>(DELAYED, &members).await
    }
}

/// A stream entry's id and the run it names (empty if none: the caller
/// acknowledges and drops it).
fn signal(entry: StreamId) -> (String, String) {
    let run: String = entry.get("run").unwrap_or_default();
    (entry.id, run)
}

impl RunQueue for RedisRunQueue {
    async fn enqueue_dispatched(&self, run: &QueuedRun, now: i64) -> Result<(), sqlx::Error> {
        // Out for delivery inline: nothing to signal yet.
        self.table.enqueue_dispatched(run, now).await
    }

    async fn claim_due(&self, now: i64, limit: i64) -> Result<Vec<QueuedRun>, sqlx::Error> {
        let mut claimed = Vec::new();
        let mut sweep =
            now.saturating_sub(self.swept_at_ms.load(Ordering::Relaxed)) >= SWEEP_EVERY_MS;
        match self.signals(now, limit).await {
            Ok(signals) => {
                let mut done = Vec::with_capacity(signals.len());
                let mut early = Vec::new();
                for (entry, run_id) in signals {
                    if !run_id.is_empty() {
                        match self.table.claim_one(&run_id, now).await? {
                            Some(run) => claimed.push(run),
                            // Pending but not due (its retry time moved):
                            // signalled again when it is.
                            None => {
                                if let Some(at) = self.table.pending_due(&run_id).await? {
                                    early.push((run_id, at));
                                }
                            }
                        }
                    }
                    done.push(entry);
                }
                if let Err(e) = self.delay(&early).await {
                    tracing::warn!(error = %e, "run queue: re-delaying early signals on Redis");
                }
                if let Err(e) = self.acknowledge(&done).await {
                    // The entries come back to another replica after
                    // ABANDONED_MS; their runs are claimed already.
                    tracing::warn!(error = %e, "run queue: acknowledging on Redis");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "run queue: Redis unreachable; the table is swept instead");
                sweep = true;
            }
        }
        // Whatever no signal brought (lost with a Redis flush or outage,
        // or never sent) is claimed from the table once overdue.
        let room = limit - i64::try_from(claimed.len()).unwrap_or(limit);
        if sweep && room > 0 {
            self.swept_at_ms.store(now, Ordering::Relaxed);
            let overdue = self
                .table
                .claim(now.saturating_sub(SWEEP_AFTER_MS), now, room)
                .await?;
            if !overdue.is_empty() {
                tracing::info!(
                    runs = overdue.len(),
                    "run queue: claimed overdue runs from the table"
                );
            }
            claimed.extend(overdue);
        }
        Ok(claimed)
    }

    async fn announce(&self, runs: &[(String, i64)]) {
        if let Err(e) = self.delay(runs).await {
            tracing::warn!(error = %e, runs = runs.len(),
                "run queue: signalling on Redis failed; the table sweep delivers them");
        }
    }

    async fn failed(
        &self,
        run_id: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        self.table.failed(run_id, error, retry_at, now).await?;
        if let Some(at) = retry_at {
            self.announce(&[(run_id.to_owned(), at)]).await;
        }
        Ok(())
    }
}
