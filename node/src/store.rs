//! The node's durable state: components, deployments, runs and the usage
//! outbox, in one SQLite file (WAL, `sqlx`, migrations in
//! `migrations/node/`).
//!
//! # Why an outbox
//! A finished run's usage is what the operator bills for, so it must never be
//! lost and never be counted twice. [`Store::finish_run`] writes the run's
//! result and a copy of its [`RunUsage`] into `usage_outbox` in one
//! transaction: once it returns, the usage is on disk, and the reporter
//! (`crate::reporter`) ships it later, as often as needed, until the control
//! plane acknowledges it. `usage_outbox.run_id` is `UNIQUE` and finishing an
//! already finished run is a no-op, so each run is queued at most once; the
//! control plane deduplicates by `run_id` for the resends.
//!
//! # Durability
//! The database runs in WAL mode with `synchronous=FULL`: every commit
//! fsyncs the WAL before it returns. WAL with `synchronous=NORMAL` would
//! already survive the process being killed (`kill -9`, OOM killer), but may
//! lose the last commits on power loss or an OS crash; usage is billing data,
//! so one fsync per finished run is the price of correctness here. A busy
//! timeout covers other processes touching the file (backups, `sqlite3`).
//!
//! # Connections
//! Writes go through a pool of exactly one connection, so writers in this
//! process queue on the pool instead of contending for SQLite's write lock;
//! multi-statement writes use `BEGIN IMMEDIATE` so that they take the write
//! lock up front and never fail half-way with `SQLITE_BUSY`. Reads use a
//! separate small pool and see only committed state.
//!
//! # Expiry
//! Finished runs carry `expires_at_ms`; [`Store::sweep_expired`] hard-deletes
//! them (no soft-delete flags). The outbox row holds its own copy of the
//! usage, so a run can be deleted before its usage is sent. Sent outbox rows
//! are deleted after [`SENT_USAGE_RETENTION_MS`]; unsent rows never are.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite, SqlitePool};

use crate::model::{
    AgentRecord, AgentSpec, ComponentRecord, FinishedRun, LlmTokens, MessageCounts, Millis, NewRun,
    RunRecord, RunStatus, RunUsage, now_ms,
};

mod journal;
pub use journal::UnreturnedLease;

/// How long an acknowledged usage record stays in the outbox (7 days), so
/// recent usage stays queryable locally after it was shipped.
pub const SENT_USAGE_RETENTION_MS: Millis = 7 * 24 * 60 * 60 * 1000;

/// Runs per multi-row INSERT in the group commit (11 variables each, well
/// under SQLite's limit of 32,766).
const FRESH_CHUNK: usize = 256;

/// Rows deleted per statement by the expiry sweep, so the write lock is held
/// only briefly even when a large backlog expires at once.
const SWEEP_CHUNK: i64 = 1000;

/// Outbox sequence numbers per `UPDATE ... IN (...)` in [`Store::mark_sent`]
/// (far below SQLite's 32,766 parameters).
const MARK_CHUNK: usize = 500;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, constraint, pool closed, ...).
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Creating the database's directory failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Applying the migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded (bad JSON, unknown status, value out
    /// of range).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A record could not be encoded as JSON.
    #[error("encoding: {0}")]
    Encode(String),
    /// The caller passed an inconsistent record.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The named row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
}

/// Usage of one agent summed over outbox records (see [`Store::usage_totals`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// The tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
    /// Runs counted.
    pub runs: u64,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// Wall time, microseconds.
    pub wall_time_us: u64,
    /// Highest peak linear memory of any run, bytes.
    pub max_peak_memory_bytes: u64,
    /// Runs by outcome name.
    pub outcomes: BTreeMap<String, u64>,
    /// LLM tokens by model.
    pub llm: BTreeMap<String, LlmTokens>,
    /// Messages by channel.
    pub messages: BTreeMap<String, MessageCounts>,
}

impl UsageTotals {
    fn add(&mut self, u: &RunUsage) {
        self.runs = self.runs.saturating_add(1);
        self.fuel_used = self.fuel_used.saturating_add(u.fuel_used);
        self.wall_time_us = self.wall_time_us.saturating_add(u.wall_time_us);
        self.max_peak_memory_bytes = self.max_peak_memory_bytes.max(u.peak_memory_bytes);
        let n = self.outcomes.entry(u.outcome.clone()).or_default();
        *n = n.saturating_add(1);
        for (model, t) in &u.llm {
            let e = self.llm.entry(model.clone()).or_default();
            e.calls = e.calls.saturating_add(t.calls);
            e.input_tokens = e.input_tokens.saturating_add(t.input_tokens);
            e.output_tokens = e.output_tokens.saturating_add(t.output_tokens);
        }
        for (channel, m) in &u.messages {
            let e = self.messages.entry(channel.clone()).or_default();
            e.sent = e.sent.saturating_add(m.sent);
            e.refused = e.refused.saturating_add(m.refused);
            e.tokens = e.tokens.saturating_add(m.tokens);
        }
    }
}

/// The node's SQLite store. Cheap to clone (the pools are shared); every
/// method may be called concurrently.
#[derive(Debug, Clone)]
pub struct Store {
    /// One connection: all writes, serialised in this process.
    write: SqlitePool,
    /// Reads.
    read: SqlitePool,
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, id: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what} of {id}: {e}")))
}

fn decode_opt<T: serde::de::DeserializeOwned>(
    what: &str,
    id: &str,
    s: Option<String>,
) -> Result<Option<T>, StoreError> {
    s.map(|s| decode(what, id, &s)).transpose()
}

fn component_from_row(r: &SqliteRow) -> Result<ComponentRecord, StoreError> {
    let sha256: String = r.try_get("sha256")?;
    let size: i64 = r.try_get("size")?;
    let size = u64::try_from(size)
        .map_err(|_| StoreError::Corrupt(format!("size of component {sha256}: {size}")))?;
    Ok(ComponentRecord {
        world: r.try_get("world")?,
        created_at_ms: r.try_get("created_at_ms")?,
        size,
        sha256,
    })
}

fn agent_from_row(r: &SqliteRow) -> Result<AgentRecord, StoreError> {
    let id: String = r.try_get("id")?;
    let spec: String = r.try_get("spec")?;
    let spec: AgentSpec = decode("spec", &id, &spec)?;
    Ok(AgentRecord {
        spec,
        paused: r.try_get("paused")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        id,
    })
}

const RUN_COLUMNS: &str = "id, agent_id, tenant_id, status, outcome, logs, usage, created_at_ms, \
                           started_at_ms, finished_at_ms, expires_at_ms";

fn run_from_row(r: &SqliteRow) -> Result<RunRecord, StoreError> {
    let id: String = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("status of run {id}: {status:?}")))?;
    Ok(RunRecord {
        agent_id: r.try_get("agent_id")?,
        tenant_id: r.try_get("tenant_id")?,
        status,
        outcome: decode_opt("outcome", &id, r.try_get("outcome")?)?,
        logs: decode_opt("logs", &id, r.try_get("logs")?)?,
        usage: decode_opt("usage", &id, r.try_get("usage")?)?,
        created_at_ms: r.try_get("created_at_ms")?,
        started_at_ms: r.try_get("started_at_ms")?,
        finished_at_ms: r.try_get("finished_at_ms")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        id,
    })
}

fn outbox_from_row(r: &SqliteRow) -> Result<(i64, RunUsage), StoreError> {
    let seq: i64 = r.try_get("seq")?;
    let payload: String = r.try_get("payload")?;
    let usage = decode("outbox payload", &format!("seq {seq}"), &payload)?;
    Ok((seq, usage))
}

fn to_i64(what: &str, n: impl TryInto<i64>) -> Result<i64, StoreError> {
    n.try_into()
        .map_err(|_| StoreError::Invalid(format!("{what} out of range")))
}

impl Store {
    /// Open (creating it and its directory if missing) the database at
    /// `path` and apply the migrations in `migrations/node/`. Must be called
    /// inside a tokio runtime.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            // Deleted content is overwritten, not left in free pages: an
            // expired output must be gone from the file (seed 004).
            .pragma("secure_delete", "ON")
            .disable_statement_logging();
        let write = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("../migrations/node").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        Ok(Self { write, read })
    }

    /// Close both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// Readiness probe: the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    // ----- components -----

    /// Insert or replace a component's record.
    pub async fn put_component(&self, c: &ComponentRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO components (sha256, size, world, created_at_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (sha256) DO UPDATE SET size = ?2, world = ?3",
        )
        .bind(&c.sha256)
        .bind(to_i64("component size", c.size)?)
        .bind(&c.world)
        .bind(c.created_at_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Every component, by sha256.
    pub async fn list_components(&self) -> Result<Vec<ComponentRecord>, StoreError> {
        sqlx::query("SELECT sha256, size, world, created_at_ms FROM components ORDER BY sha256")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(component_from_row)
            .collect()
    }

    /// One component.
    pub async fn get_component(&self, sha256: &str) -> Result<Option<ComponentRecord>, StoreError> {
        sqlx::query("SELECT sha256, size, world, created_at_ms FROM components WHERE sha256 = ?1")
            .bind(sha256)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(component_from_row)
            .transpose()
    }

    /// Delete a component's record; false when there was none. Does not
    /// check [`Store::component_in_use`]: the caller decides.
    pub async fn delete_component(&self, sha256: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM components WHERE sha256 = ?1")
            .bind(sha256)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Whether any deployment runs this component.
    pub async fn component_in_use(&self, sha256: &str) -> Result<bool, StoreError> {
        let (used,): (bool,) =
            sqlx::query_as("SELECT EXISTS (SELECT 1 FROM agents WHERE component = ?1)")
                .bind(sha256)
                .fetch_one(&self.read)
                .await?;
        Ok(used)
    }

    // ----- agents -----

    /// Insert or update a deployment. An existing row keeps its
    /// `created_at_ms`; everything else is replaced.
    pub async fn put_agent(&self, a: &AgentRecord) -> Result<(), StoreError> {
        let spec = encode("agent spec", &a.spec)?;
        sqlx::query(
            "INSERT INTO agents (id, tenant_id, component, spec, paused, created_at_ms, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (id) DO UPDATE SET tenant_id = ?2, component = ?3, spec = ?4, \
             paused = ?5, updated_at_ms = ?7",
        )
        .bind(&a.id)
        .bind(&a.spec.tenant_id)
        .bind(&a.spec.component)
        .bind(spec)
        .bind(a.paused)
        .bind(a.created_at_ms)
        .bind(a.updated_at_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// One deployment.
    pub async fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        sqlx::query(
            "SELECT id, spec, paused, created_at_ms, updated_at_ms FROM agents WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(agent_from_row)
        .transpose()
    }

    /// Every deployment, by id.
    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        sqlx::query("SELECT id, spec, paused, created_at_ms, updated_at_ms FROM agents ORDER BY id")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    /// Delete a deployment; false when there was none. Its runs stay until
    /// they expire.
    pub async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM agents WHERE id = ?1")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Pause or resume a deployment (and set `updated_at_ms` to now); false
    /// when there is no such agent.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE agents SET paused = ?1, updated_at_ms = ?2 WHERE id = ?3")
            .bind(paused)
            .bind(now_ms())
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ----- runs -----

    /// Record an accepted run (status `queued`). Fails if the id exists.
    pub async fn insert_run(&self, run: &NewRun) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO runs (id, agent_id, tenant_id, status, input, created_at_ms) \
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
        )
        .bind(&run.id)
        .bind(&run.agent_id)
        .bind(&run.tenant_id)
        .bind(&run.input)
        .bind(run.created_at_ms)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Move a queued run to `running`. False when the run is not queued (it
    /// does not exist, already runs, or was finished, e.g. cancelled).
    pub async fn mark_running(&self, id: &str, started_at_ms: Millis) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE runs SET status = 'running', started_at_ms = ?1 \
             WHERE id = ?2 AND status = 'queued'",
        )
        .bind(started_at_ms)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Finish a run: in one transaction, store its outcome, logs and usage
    /// (status `finished`, `finished_at_ms = usage.finished_at_ms`) and queue
    /// the usage in the outbox. Once this returns `Ok(true)` the usage is on
    /// disk and will be reported.
    ///
    /// Idempotent: finishing a run that is already finished changes nothing,
    /// queues nothing and returns `Ok(false)`. A queued run may be finished
    /// directly (cancelled before it started). An unknown run id is
    /// [`StoreError::NotFound`], and `usage.run_id` must equal `run_id`
    /// ([`StoreError::Invalid`]).
    pub async fn finish_run(&self, run: &FinishedRun) -> Result<bool, StoreError> {
        self.finish_runs(&[(None, run.clone())])
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Invalid("not recorded".into())))
    }

    /// Finish several runs in one transaction (one fsync): the node's group
    /// commit. Each entry is a finished run and, for a run that was never
    /// written as queued (a `?wait=true` run, acknowledged only now), its
    /// acceptance record, inserted directly as finished. Answers per entry
    /// what [`Store::finish_run`] would. A failing statement fails the whole
    /// batch (nothing is committed), so callers may retry.
    ///
    /// New runs go in with one multi-row INSERT per table and chunk: every
    /// statement is a round trip to sqlx's SQLite worker thread, and at
    /// thousands of runs a second those wake-ups, not SQLite, were the cost.
    pub async fn finish_runs(
        &self,
        batch: &[(Option<NewRun>, FinishedRun)],
    ) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
        let mut results: Vec<Option<Result<bool, StoreError>>> = Vec::with_capacity(batch.len());
        let mut fresh = Vec::new();
        for (i, (new, run)) in batch.iter().enumerate() {
            if run.usage.run_id != run.run_id {
                results.push(Some(Err(StoreError::Invalid(format!(
                    "usage of run {} names run {}",
                    run.run_id, run.usage.run_id
                )))));
                continue;
            }
            results.push(None);
            if let Some(new) = new {
                fresh.push((i, new, run));
            }
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in fresh.chunks(FRESH_CHUNK) {
            let mut encoded = Vec::with_capacity(chunk.len());
            for (_, _, run) in chunk {
                encoded.push((
                    encode("outcome", &run.outcome)?,
                    encode("logs", &run.logs)?,
                    encode("usage", &run.usage)?,
                ));
            }
            // Which of these ids exist already (a retried batch): normally
            // none, so this answers one empty result. (`INSERT ... ON
            // CONFLICT DO NOTHING RETURNING id` said the same, but sqlx
            // hands each returned row across from its worker thread as a
            // message of its own: a wake-up per run.) Under `BEGIN
            // IMMEDIATE` on the only writer nothing can insert between
            // this read and the insert.
            let ids = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT id FROM runs WHERE id IN ({ids})");
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for (_, new, _) in chunk {
                query = query.bind(&new.id);
            }
            let existing: std::collections::HashSet<String> =
                query.fetch_all(&mut *tx).await?.into_iter().collect();
            // Also once per id within the batch: the first entry wins.
            let mut seen = std::collections::HashSet::with_capacity(chunk.len());
            let fresh_flags: Vec<bool> = chunk
                .iter()
                .map(|(_, new, _)| !existing.contains(&new.id) && seen.insert(new.id.as_str()))
                .collect();
            let fresh_rows: Vec<_> = chunk
                .iter()
                .zip(&encoded)
                .zip(&fresh_flags)
                .filter(|(_, fresh)| **fresh)
                .map(|(row, _)| row)
                .collect();
            if !fresh_rows.is_empty() {
                let values =
                    vec!["(?, ?, ?, 'finished', ?, ?, ?, ?, ?, ?, ?, ?)"; fresh_rows.len()]
                        .join(", ");
                let sql = format!(
                    "INSERT INTO runs (id, agent_id, tenant_id, status, input, outcome, logs, \
                     usage, created_at_ms, started_at_ms, finished_at_ms, expires_at_ms) \
                     VALUES {values} ON CONFLICT (id) DO NOTHING"
                );
                let mut query = sqlx::query(&sql);
                for ((_, new, run), (outcome, logs, usage)) in &fresh_rows {
                    query = query
                        .bind(&new.id)
                        .bind(&new.agent_id)
                        .bind(&new.tenant_id)
                        .bind(&new.input)
                        .bind(outcome)
                        .bind(logs)
                        .bind(usage)
                        .bind(new.created_at_ms)
                        .bind(run.started_at_ms)
                        .bind(run.usage.finished_at_ms)
                        .bind(run.expires_at_ms);
                }
                let done = query.execute(&mut *tx).await?;
                if done.rows_affected() != fresh_rows.len() as u64 {
                    // Cannot happen under the write lock; refuse rather
                    // than report runs as recorded that were not.
                    return Err(StoreError::Invalid(
                        "group commit: a run appeared during its insert".into(),
                    ));
                }
            }
            let queued = fresh_rows;
            if !queued.is_empty() {
                let values = vec!["(?, ?, ?, ?)"; queued.len()].join(", ");
                let sql = format!(
                    "INSERT INTO usage_outbox (run_id, tenant_id, payload, created_at_ms) \
                     VALUES {values} ON CONFLICT (run_id) DO NOTHING"
                );
                let now = now_ms();
                let mut query = sqlx::query(&sql);
                for ((_, new, run), (_, _, usage)) in &queued {
                    query = query
                        .bind(&run.run_id)
                        .bind(&new.tenant_id)
                        .bind(usage)
                        .bind(now);
                }
                query.execute(&mut *tx).await?;
            }
            for ((i, _, _), fresh) in chunk.iter().zip(fresh_flags) {
                results[*i] = Some(Ok(fresh));
            }
        }
        for (i, (new, run)) in batch.iter().enumerate() {
            if new.is_some() || results[i].is_some() {
                continue;
            }
            results[i] = Some(self.finish_queued(&mut tx, run).await?);
        }
        tx.commit().await?;
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Invalid("not recorded".into()))))
            .collect())
    }

    /// Inside a transaction: finish a run written earlier as queued.
    async fn finish_queued(
        &self,
        tx: &mut sqlx::SqliteConnection,
        run: &FinishedRun,
    ) -> Result<Result<bool, StoreError>, StoreError> {
        let outcome = encode("outcome", &run.outcome)?;
        let logs = encode("logs", &run.logs)?;
        let usage = encode("usage", &run.usage)?;
        let updated = sqlx::query(
            "UPDATE runs SET status = 'finished', outcome = ?1, logs = ?2, \
             usage = ?3, finished_at_ms = ?4, expires_at_ms = ?5, \
             started_at_ms = COALESCE(?7, started_at_ms) \
             WHERE id = ?6 AND status <> 'finished' RETURNING tenant_id",
        )
        .bind(&outcome)
        .bind(&logs)
        .bind(&usage)
        .bind(run.usage.finished_at_ms)
        .bind(run.expires_at_ms)
        .bind(&run.run_id)
        .bind(run.started_at_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let tenant_id: String = match updated {
            Some(row) => row.try_get("tenant_id")?,
            None => {
                let (exists,): (bool,) =
                    sqlx::query_as("SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)")
                        .bind(&run.run_id)
                        .fetch_one(&mut *tx)
                        .await?;
                return Ok(if exists {
                    Ok(false)
                } else {
                    Err(StoreError::NotFound(format!("run {}", run.run_id)))
                });
            }
        };
        sqlx::query(
            "INSERT INTO usage_outbox (run_id, tenant_id, payload, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(&run.run_id)
        .bind(&tenant_id)
        .bind(&usage)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        Ok(Ok(true))
    }

    /// One run.
    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(run_from_row)
            .transpose()
    }

    /// Up to `limit` runs, newest first, of one agent or of all.
    pub async fn list_runs(
        &self,
        agent_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let rows =
            match agent_id {
                Some(agent) => {
                    sqlx::query(&format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE agent_id = ?1 \
                     ORDER BY created_at_ms DESC, id DESC LIMIT ?2"
                    ))
                    .bind(agent)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?
                }
                None => sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at_ms DESC, id DESC LIMIT ?1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?,
            };
        rows.iter().map(run_from_row).collect()
    }

    /// Crash recovery, to be called once at start-up **before** the node
    /// accepts or schedules runs: every run a previous process left `queued`
    /// or `running` died with it. Each is finished as cancelled
    /// (`delta_runtime::Outcome::Cancelled`, no logs) at `now_ms`, to expire
    /// at `expires_at_ms`, through [`Store::finish_run`], so its usage is
    /// queued and reported exactly once. Returns the ids finished.
    ///
    /// The usage of such a run is all zeros: the fuel counter, the wall clock
    /// and the LLM and message tallies lived in the dead process's memory.
    /// Tokens an interrupted run spent are still charged by the budget
    /// ledger, which records them durably as they are reserved.
    pub async fn recover_interrupted(
        &self,
        now_ms: Millis,
        expires_at_ms: Millis,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, agent_id, tenant_id FROM runs WHERE status IN ('queued', 'running') \
             ORDER BY created_at_ms, id",
        )
        .fetch_all(&self.read)
        .await?;
        let outcome = serde_json::to_value(delta_runtime::Outcome::Cancelled)
            .map_err(|e| StoreError::Encode(format!("outcome: {e}")))?;
        let name = delta_runtime::Outcome::Cancelled.name();
        let mut finished = Vec::new();
        for r in &rows {
            let run_id: String = r.try_get("id")?;
            let usage = RunUsage {
                run_id: run_id.clone(),
                agent_id: r.try_get("agent_id")?,
                tenant_id: r.try_get("tenant_id")?,
                outcome: name.to_owned(),
                finished_at_ms: now_ms,
                ..RunUsage::default()
            };
            let done = self
                .finish_run(&FinishedRun {
                    run_id: run_id.clone(),
                    outcome: outcome.clone(),
                    logs: serde_json::Value::Array(Vec::new()),
                    usage,
                    expires_at_ms,
                    started_at_ms: None,
                })
                .await?;
            if done {
                finished.push(run_id);
            }
        }
        Ok(finished)
    }

    /// Hard-delete what has expired at `now_ms`: finished runs whose
    /// `expires_at_ms <= now_ms` (with their input, output and logs), and
    /// outbox rows acknowledged more than [`SENT_USAGE_RETENTION_MS`] ago.
    /// Unsent usage is never deleted, and deleting a run never affects its
    /// usage: the outbox row carries its own copy. Returns the number of rows
    /// deleted (runs plus outbox rows).
    pub async fn sweep_expired(&self, now_ms: Millis) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        // A run's result rides in its usage record (for the control plane's
        // result webhooks); it must not outlive the run, whether the record
        // was sent (kept a while longer) or never will be (no control
        // plane). The rest of the record is usage, kept as before.
        sqlx::query(
            "UPDATE usage_outbox SET payload = json_remove(payload, '$.result') \
             WHERE run_id IN (SELECT id FROM runs WHERE expires_at_ms <= ?1) \
             AND json_type(payload, '$.result') IS NOT NULL",
        )
        .bind(now_ms)
        .execute(&self.write)
        .await?;
        loop {
            let r = sqlx::query(
                "DELETE FROM runs WHERE id IN \
                 (SELECT id FROM runs WHERE expires_at_ms <= ?1 LIMIT ?2)",
            )
            .bind(now_ms)
            .bind(SWEEP_CHUNK)
            .execute(&self.write)
            .await?;
            deleted += r.rows_affected();
            if r.rows_affected() < SWEEP_CHUNK as u64 {
                break;
            }
        }
        let cutoff = now_ms.saturating_sub(SENT_USAGE_RETENTION_MS);
        loop {
            let r = sqlx::query(
                "DELETE FROM usage_outbox WHERE seq IN \
                 (SELECT seq FROM usage_outbox WHERE sent_at_ms IS NOT NULL AND sent_at_ms <= ?1 \
                  LIMIT ?2)",
            )
            .bind(cutoff)
            .bind(SWEEP_CHUNK)
            .execute(&self.write)
            .await?;
            deleted += r.rows_affected();
            if r.rows_affected() < SWEEP_CHUNK as u64 {
                break;
            }
        }
        if deleted > 0 {
            // The WAL still holds the deleted rows' old page images until a
            // checkpoint overwrites them: take it now, and truncate the WAL.
            // Readers in progress can make it partial; the next sweep
            // finishes it.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.write)
                .await?;
        }
        Ok(deleted)
    }

    // ----- outbox -----

    /// Up to `limit` usage records not yet acknowledged, oldest first, with
    /// their outbox sequence numbers (for [`Store::mark_sent`]).
    pub async fn outbox_unsent(&self, limit: usize) -> Result<Vec<(i64, RunUsage)>, StoreError> {
        sqlx::query(
            "SELECT seq, payload FROM usage_outbox WHERE sent_at_ms IS NULL ORDER BY seq LIMIT ?1",
        )
        .bind(to_i64("limit", limit)?)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(outbox_from_row)
        .collect()
    }

    /// Record that the control plane acknowledged these outbox rows. Rows
    /// already marked keep their first `sent_at_ms`; sequence numbers are
    /// never reused (`AUTOINCREMENT`), so a stale one cannot mark another
    /// run's usage. Returns the number of rows newly marked.
    pub async fn mark_sent(&self, seqs: &[i64], sent_at_ms: Millis) -> Result<u64, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let mut marked = 0;
        for chunk in seqs.chunks(MARK_CHUNK) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("UPDATE usage_outbox SET sent_at_ms = ");
            q.push_bind(sent_at_ms);
            q.push(" WHERE sent_at_ms IS NULL AND seq IN (");
            let mut sep = q.separated(", ");
            for s in chunk {
                sep.push_bind(*s);
            }
            q.push(")");
            marked += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(marked)
    }

    /// How many usage records wait to be acknowledged, and when the oldest
    /// of them was queued.
    pub async fn outbox_backlog(&self) -> Result<(u64, Option<Millis>), StoreError> {
        let (n, oldest): (i64, Option<Millis>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at_ms) FROM usage_outbox WHERE sent_at_ms IS NULL",
        )
        .fetch_one(&self.read)
        .await?;
        Ok((u64::try_from(n).unwrap_or_default(), oldest))
    }

    /// Up to `limit` usage records queued at or after `since_ms` (sent or
    /// not), oldest first, optionally of one tenant. Sent records are kept
    /// for [`SENT_USAGE_RETENTION_MS`] and unsent ones until they are sent,
    /// so with no control plane configured all usage stays queryable here.
    pub async fn usage_since(
        &self,
        since_ms: Millis,
        tenant_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunUsage>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, payload FROM usage_outbox \
             WHERE created_at_ms >= ?1 AND (?2 IS NULL OR tenant_id = ?2) ORDER BY seq LIMIT ?3",
        )
        .bind(since_ms)
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| outbox_from_row(r).map(|(_, u)| u))
            .collect()
    }

    /// Usage summed per (tenant, agent) over the outbox records queued at or
    /// after `since_ms`, optionally of one tenant; sorted by tenant, then
    /// agent. Same retention as [`Store::usage_since`].
    pub async fn usage_totals(
        &self,
        since_ms: Millis,
        tenant_id: Option<&str>,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let mut totals: BTreeMap<(String, String), UsageTotals> = BTreeMap::new();
        let mut rows = sqlx::query(
            "SELECT seq, payload FROM usage_outbox \
             WHERE created_at_ms >= ?1 AND (?2 IS NULL OR tenant_id = ?2) ORDER BY seq",
        )
        .bind(since_ms)
        .bind(tenant_id)
        .fetch(&self.read);
        while let Some(r) = rows.try_next().await? {
            let (_, u) = outbox_from_row(&r)?;
            totals
                .entry((u.tenant_id.clone(), u.agent_id.clone()))
                .or_insert_with(|| UsageTotals {
                    tenant_id: u.tenant_id.clone(),
                    agent_id: u.agent_id.clone(),
                    ..UsageTotals::default()
                })
                .add(&u);
        }
        Ok(totals.into_values().collect())
    }
}

#[cfg(test)]
mod tests;
