//! The token budget ledger: who may spend how many tokens, and a durable,
//! append-only record of every movement.
//!
//! # What this crate owns
//! The SQLite database under `migrations/ledger/` (users, accounts, open
//! reservations, token requests, ledger entries) and [`SqliteLedger`], which
//! implements [`delta_host_api::BudgetLedger`] for the `delta:agent/budget`
//! capability (and the reservations the LLM and messaging capabilities make),
//! plus the administrative operations the CLI's config loader (`src/config.rs`)
//! and a node without a control plane (`node/src/capabilities.rs`, through
//! [`seed`]) use to set budgets up.
//!
//! The control plane does **not** use this ledger: it keeps its own budget
//! tables over SQLite or PostgreSQL (`control/src/budgets/`), and a node
//! with a control plane spends against leases from it
//! (`node/src/leases/`). What all three share is the arithmetic, in
//! [`rules`] (the `delta-budget-rules` crate, re-exported here; a crate of
//! its own with no dependencies so that the control plane can use it
//! without linking this crate's Wasmtime-based host API).
//!
//! # Model
//! - A **user** has a tier with a monthly allocation for a period (`YYYY-MM`).
//! - A **main agent** gets a budget carved from its user's allocation; what no
//!   main agent holds is the user's **reserve pool**. Creating a main agent
//!   fails when the pool cannot cover its budget.
//! - A **bot** gets a budget carved from its parent main agent: the tokens
//!   leave the parent's `allocated` and enter the bot's.
//! - Every account has `allocated`, `spent` and `reserved`;
//!   `available = allocated - spent - reserved`. `reserve` holds tokens for an
//!   operation in flight, `settle` charges what was used and returns the rest,
//!   `release` returns everything. A settle above the hold charges only what
//!   the budget still has and records the rest as `uncovered`.
//! - A bot may **request** more tokens from its parent. Requests above the
//!   parent's `max_request` (or of 0 tokens) are refused; requests within its
//!   `auto_approve_limit` that the parent can cover are approved at once (the
//!   tokens move parent -> bot); the others wait for [`SqliteLedger::decide_request`]
//!   or expire ([`SqliteLedger::expire_requests`]).
//! - **Roll-over** ([`SqliteLedger::roll_over`]) starts a new period for every
//!   user: spent goes to 0, every account gets its grant back (a bot its own
//!   grant; a main agent its grant minus its bots' grants, so tokens moved by
//!   approved requests return to the main agent), held tokens are returned
//!   (the holds stay open; settling one later charges the new period as far as
//!   it allows), and pending requests expire. Users' allocations and main
//!   agents' grants are unchanged.
//!
//! Every movement is a row of `ledger_entries`, which triggers make
//! append-only; each account entry carries the signed change it made to
//! `allocated`, `spent` and `reserved`, so summing an agent's entries gives its
//! balance.
//!
//! # Why group commit
//! Durability means an acknowledged operation survives a crash, so each
//! commit must reach the disk (`synchronous=FULL`, one fsync of the WAL). At
//! one transaction per operation the disk's fsync rate caps throughput at a
//! few thousand operations per second. Instead, one writer task owns the only
//! write connection and an in-memory copy of every balance: it
//! takes all queued operations from its channel, applies them one after
//! another (each check-and-update is atomic because nothing else writes),
//! writes the whole batch in one transaction, commits, and only then answers
//! each caller. Batches grow with load, so the fsync cost is shared by
//! everything that arrived during the previous commit. The writer is two
//! tasks (applier and committer, see `write_loop`) so that applying the next
//! batch overlaps with committing the current one; acknowledgements still go
//! out strictly in commit order, and a failed batch fails every batch applied
//! on top of it. Reads
//! ([`SqliteLedger::balance`], `remaining`, `poll_request`) use a separate
//! pool and see only committed state.

mod book;
mod model;
pub use delta_budget_rules as rules;
pub mod seed;
mod store;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use delta_host_api::budget::{Balance, BudgetError, TokenRequest};
use delta_host_api::{BudgetLedger, CallContext, LedgerError, Reservation, Settlement};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use model::{
    AccountBalance, AccountKind, Decision, Error, LedgerEntry, RequestLimits, RollOverReport,
    TokenRequestRecord, UserRecord,
};

use book::{Book, Effects};
use model::{parse_req_id, parse_res_id, parse_status, req_id, res_id, to_u64};

/// Most operations applied in one transaction. Large enough to amortise an
/// fsync over thousands of callers, small enough to bound a batch's latency.
const MAX_BATCH: usize = 4096;

/// Queue depth in front of the writer; callers wait (backpressure) when full.
const QUEUE: usize = 16_384;

/// What a job hands back after being applied: called once the batch's
/// commit finished, with `Some(error)` if it failed.
type Ack = Box<dyn FnOnce(Option<&str>) + Send>;

/// One queued operation: applied to the book, recording its effects.
type Job = Box<dyn FnOnce(&mut Book, &mut Effects, i64) -> Ack + Send>;

/// The budget ledger on one SQLite file. Cheap to share behind an `Arc`;
/// every method may be called concurrently.
pub struct SqliteLedger {
    jobs: mpsc::Sender<Job>,
    writer: JoinHandle<()>,
    read: SqlitePool,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SqliteLedger {
    /// Open (creating if needed) the ledger database at `path`, apply the
    /// migrations and start the writer task. Must be called inside a tokio
    /// runtime.
    ///
    /// The database runs in WAL mode with `synchronous=FULL` (a commit returns
    /// only once it is on disk), foreign keys on, and a busy timeout so that
    /// readers and an external checkpoint never fail at once.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .disable_statement_logging();
        let mut conn = opts.connect().await?;
        sqlx::migrate!("../migrations/ledger")
            .run(&mut conn)
            .await?;
        let book = store::load(&mut conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_loop(conn, book, rx));
        Ok(Self { jobs, writer, read })
    }

    /// Stop accepting operations, wait until every queued one is committed
    /// and acknowledged, and close the database.
    pub async fn close(self) -> Result<(), Error> {
        drop(self.jobs);
        self.writer
            .await
            .map_err(|e| Error::Storage(format!("writer task: {e}")))?;
        self.read.close().await;
        Ok(())
    }

    /// Queue `f` for the writer and wait until its batch is committed. The
    /// outer error is the batch's storage failure (or a stopped writer).
    async fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Book, &mut Effects, i64) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel::<Result<T, Error>>();
        let job: Job = Box::new(move |book, fx, now| {
            let out = f(book, fx, now);
            Box::new(move |failed: Option<&str>| {
                let msg = match failed {
                    None => Ok(out),
                    Some(e) => Err(Error::Storage(e.to_owned())),
                };
                // The caller may have gone away (e.g. its run was cancelled);
                // the operation is committed either way.
                let _ = tx.send(msg);
            })
        });
        self.jobs.send(job).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Create a user with a tier and its monthly allocation, starting in
    /// `period` (`YYYY-MM`).
    pub async fn create_user(
        &self,
        user_id: &str,
        tier: &str,
        monthly_allocation: u64,
        period: &str,
    ) -> Result<(), Error> {
        let (u, t, p) = (user_id.to_owned(), tier.to_owned(), period.to_owned());
        self.submit(move |b, fx, now| b.create_user(fx, now, &u, &t, monthly_allocation, &p))
            .await?
    }

    /// Change a user's tier and monthly allocation (effective at once for the
    /// reserve pool). Refused if the allocation would drop below what main
    /// agents already hold.
    pub async fn update_user(
        &self,
        user_id: &str,
        tier: &str,
        monthly_allocation: u64,
    ) -> Result<(), Error> {
        let (u, t) = (user_id.to_owned(), tier.to_owned());
        self.submit(move |b, fx, now| b.update_user(fx, now, &u, &t, monthly_allocation))
            .await?
    }

    /// Create a main agent of `user_id` with `budget` tokens per period taken
    /// from the user's reserve pool ([`Error::InsufficientReserve`] if the pool
    /// is smaller), and the limits for its bots' requests.
    pub async fn create_main_agent(
        &self,
        agent_id: &str,
        user_id: &str,
        budget: u64,
        limits: RequestLimits,
    ) -> Result<AccountBalance, Error> {
        let (a, u) = (agent_id.to_owned(), user_id.to_owned());
        self.submit(move |b, fx, now| b.create_main(fx, now, &a, &u, budget, limits))
            .await??;
        self.balance(agent_id).await
    }

    /// Create a bot of main agent `parent_id` with `budget` tokens per period
    /// moved out of the parent's available tokens ([`Error::Insufficient`] if
    /// the parent has fewer).
    pub async fn create_bot(
        &self,
        agent_id: &str,
        parent_id: &str,
        budget: u64,
    ) -> Result<AccountBalance, Error> {
        let (a, p) = (agent_id.to_owned(), parent_id.to_owned());
        self.submit(move |b, fx, now| b.create_bot(fx, now, &a, &p, budget))
            .await??;
        self.balance(agent_id).await
    }

    /// Change a main agent's limits for its bots' requests.
    pub async fn set_request_limits(
        &self,
        agent_id: &str,
        limits: RequestLimits,
    ) -> Result<(), Error> {
        let a = agent_id.to_owned();
        self.submit(move |b, fx, _| {
            b.set_limits(fx, &a, limits.auto_approve_limit, limits.max_request)
        })
        .await?
    }

    /// Approve (move the tokens from the parent to the bot; refused with
    /// [`Error::Insufficient`] if the parent cannot cover them, leaving the
    /// request pending) or deny a pending request. `decided_by` is recorded.
    pub async fn decide_request(
        &self,
        request_id: &str,
        decision: Decision,
        decided_by: &str,
    ) -> Result<TokenRequestRecord, Error> {
        let Some(id) = parse_req_id(request_id) else {
            return Err(Error::NotPending(request_id.to_owned()));
        };
        let (shown, by) = (request_id.to_owned(), decided_by.to_owned());
        self.submit(move |b, fx, now| b.decide(fx, now, id, &shown, decision, &by))
            .await?
    }

    /// Expire every pending request made at least `older_than` ago; returns
    /// how many expired.
    pub async fn expire_requests(&self, older_than: Duration) -> Result<u64, Error> {
        let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        self.submit(move |b, fx, now| b.expire(fx, now, now.saturating_sub(age)))
            .await
    }

    /// Start `period` (`YYYY-MM`, after every user's current period) for all
    /// users. For every account: `spent` becomes 0 and `reserved` 0; a bot's
    /// `allocated` becomes its grant, a main agent's becomes its grant minus
    /// its bots' grants (tokens its bots got through requests come back).
    /// Open reservations stay open but no longer hold tokens; settling one
    /// charges the new period only as far as its budget allows (the rest is
    /// `uncovered`), releasing one changes nothing. Pending requests expire
    /// (`decided_by = "roll-over"`). User allocations and grants are kept.
    /// One `rollover` entry per account records the changes.
    pub async fn roll_over(&self, period: &str) -> Result<RollOverReport, Error> {
        let p = period.to_owned();
        self.submit(move |b, fx, now| b.roll_over(fx, now, &p))
            .await?
    }

    /// A user's allocation and reserve pool (committed state).
    pub async fn user(&self, user_id: &str) -> Result<UserRecord, Error> {
        let row = sqlx::query(
            "SELECT tier, monthly_allocation, carved, period FROM users WHERE user_id = ?",
        )
        .bind(user_id)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| Error::UnknownUser(user_id.to_owned()))?;
        let alloc: i64 = row.try_get("monthly_allocation")?;
        let carved: i64 = row.try_get("carved")?;
        Ok(UserRecord {
            user_id: user_id.to_owned(),
            tier: row.try_get("tier")?,
            monthly_allocation: to_u64(alloc),
            carved: to_u64(carved),
            reserve_pool: to_u64(alloc - carved),
            period: row.try_get("period")?,
        })
    }

    /// An agent's account (committed state: every acknowledged operation is
    /// included).
    pub async fn balance(&self, agent_id: &str) -> Result<AccountBalance, Error> {
        let row = sqlx::query(
            "SELECT kind, parent_id, user_id, grant_amount, allocated, spent, reserved, \
             auto_approve_limit, max_request, period FROM accounts WHERE agent_id = ?",
        )
        .bind(agent_id)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| Error::UnknownAccount(agent_id.to_owned()))?;
        let kind: String = row.try_get("kind")?;
        let allocated: i64 = row.try_get("allocated")?;
        let spent: i64 = row.try_get("spent")?;
        let reserved: i64 = row.try_get("reserved")?;
        Ok(AccountBalance {
            agent_id: agent_id.to_owned(),
            kind: AccountKind::parse(&kind)?,
            parent_id: row.try_get("parent_id")?,
            user_id: row.try_get("user_id")?,
            grant: to_u64(row.try_get("grant_amount")?),
            allocated: to_u64(allocated),
            spent: to_u64(spent),
            reserved: to_u64(reserved),
            available: to_u64(allocated - spent - reserved),
            auto_approve_limit: to_u64(row.try_get("auto_approve_limit")?),
            max_request: to_u64(row.try_get("max_request")?),
            period: row.try_get("period")?,
        })
    }

    /// Every ledger entry about `agent_id`'s account, oldest first (for
    /// audits).
    pub async fn ledger_entries(&self, agent_id: &str) -> Result<Vec<LedgerEntry>, Error> {
        let rows = sqlx::query(
            "SELECT seq, at, period, user_id, agent_id, kind, amount, d_allocated, d_spent, \
             d_reserved, reservation_id, request_id, counterparty, note \
             FROM ledger_entries WHERE agent_id = ? ORDER BY seq",
        )
        .bind(agent_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let res: Option<i64> = r.try_get("reservation_id")?;
                let req: Option<i64> = r.try_get("request_id")?;
                Ok(LedgerEntry {
                    seq: r.try_get("seq")?,
                    at_ms: r.try_get("at")?,
                    period: r.try_get("period")?,
                    user_id: r.try_get("user_id")?,
                    agent_id: r.try_get("agent_id")?,
                    kind: r.try_get("kind")?,
                    amount: to_u64(r.try_get("amount")?),
                    d_allocated: r.try_get("d_allocated")?,
                    d_spent: r.try_get("d_spent")?,
                    d_reserved: r.try_get("d_reserved")?,
                    reservation_id: res.map(res_id),
                    request_id: req.map(req_id),
                    counterparty: r.try_get("counterparty")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    /// A token request by id, whoever made it (for the owner deciding it).
    pub async fn token_request(&self, request_id: &str) -> Result<TokenRequestRecord, Error> {
        let unknown = || Error::NotPending(request_id.to_owned());
        let id = parse_req_id(request_id).ok_or_else(unknown)?;
        let r = sqlx::query(
            "SELECT bot_id, parent_id, amount, reason, status, created_at, decided_at, decided_by \
             FROM token_requests WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(unknown)?;
        let status: String = r.try_get("status")?;
        Ok(TokenRequestRecord {
            id: req_id(id),
            bot_id: r.try_get("bot_id")?,
            parent_id: r.try_get("parent_id")?,
            amount: to_u64(r.try_get("amount")?),
            reason: r.try_get("reason")?,
            status: parse_status(&status)?,
            created_at_ms: r.try_get("created_at")?,
            decided_at_ms: r.try_get("decided_at")?,
            decided_by: r.try_get("decided_by")?,
        })
    }
}

/// A batch on its way from the applier to the committer.
enum ToCommit {
    /// Write `fx` and then answer `acks`. `generation` is the book's
    /// generation the batch was applied to.
    Batch {
        generation: u64,
        fx: Box<Effects>,
        acks: Vec<Ack>,
    },
    /// After a failed batch: read the committed state back for the applier.
    Reload(oneshot::Sender<Result<Book, Error>>),
}

/// The writer, as two stages so that applying batch N+1 (and waking the
/// callers of batch N-1) overlaps with committing batch N:
///
/// - the applier owns the [`Book`]: it takes every queued job, applies them
///   one after another and hands the sealed batch to the committer;
/// - the committer owns the write connection: it writes each batch in one
///   transaction, commits, then acknowledges its jobs, strictly in order.
///
/// A batch is applied to a book that already contains the (uncommitted)
/// batches before it, so if one fails, every later batch applied to the same
/// generation of the book fails too, and the applier reloads the book from
/// the file before going on. Ends when every sender is gone and the queue is
/// drained.
async fn write_loop(conn: SqliteConnection, book: Book, rx: mpsc::Receiver<Job>) {
    // Capacity 1: at most one batch waits while another commits, which
    // bounds how far the book runs ahead of the file.
    let (to_commit, from_apply) = mpsc::channel(1);
    let failed = Arc::new(AtomicBool::new(false));
    let committer = tokio::spawn(commit_loop(conn, from_apply, failed.clone()));
    apply_loop(book, rx, to_commit, failed).await;
    if let Err(e) = committer.await {
        tracing::error!(error = %e, "ledger committer task failed");
    }
}

async fn apply_loop(
    mut book: Book,
    mut rx: mpsc::Receiver<Job>,
    to_commit: mpsc::Sender<ToCommit>,
    failed: Arc<AtomicBool>,
) {
    let mut generation = 0u64;
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        if failed.swap(false, Ordering::AcqRel) {
            // The committer has failed (or will fail) every batch of this
            // generation; start again from what is on disk.
            let (tx, reloaded) = oneshot::channel();
            if to_commit.send(ToCommit::Reload(tx)).await.is_err() {
                break;
            }
            match reloaded.await {
                Ok(Ok(b)) => book = b,
                Ok(Err(e)) => {
                    // Dropping the queued jobs answers them `Closed`, as it
                    // does every later operation: better than a stale book.
                    tracing::error!(error = %e, "ledger reload failed; stopping the writer");
                    break;
                }
                Err(_) => break,
            }
            generation += 1;
        }
        let mut fx = Box::<Effects>::default();
        let now = now_ms();
        let acks: Vec<Ack> = jobs
            .drain(..)
            .map(|job| job(&mut book, &mut fx, now))
            .collect();
        fx.seal(&book);
        let batch = ToCommit::Batch {
            generation,
            fx,
            acks,
        };
        if to_commit.send(batch).await.is_err() {
            break;
        }
    }
}

async fn commit_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<ToCommit>,
    failed: Arc<AtomicBool>,
) {
    let mut poisoned: Option<u64> = None;
    while let Some(msg) = rx.recv().await {
        let (generation, fx, acks) = match msg {
            ToCommit::Batch {
                generation,
                fx,
                acks,
            } => (generation, fx, acks),
            ToCommit::Reload(tx) => {
                let _ = tx.send(store::load(&mut conn).await);
                continue;
            }
        };
        if poisoned == Some(generation) {
            let msg = "an earlier batch failed; nothing in this one was applied";
            acks.into_iter().for_each(|ack| ack(Some(msg)));
            continue;
        }
        // A batch with no effects (only refusals) has nothing to make
        // durable, but is still answered in order: its answers may depend on
        // the batch before it.
        let result = if fx.is_empty() {
            Ok(())
        } else {
            store::flush(&mut conn, &fx).await
        };
        match result {
            Ok(()) => acks.into_iter().for_each(|ack| ack(None)),
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "ledger batch failed; nothing in it was applied");
                poisoned = Some(generation);
                failed.store(true, Ordering::Release);
                acks.into_iter().for_each(|ack| ack(Some(&msg)));
            }
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the ledger's write connection");
    }
}

fn storage(e: Error) -> LedgerError {
    match e {
        Error::Storage(s) => LedgerError::Storage(s),
        other => LedgerError::Storage(other.to_string()),
    }
}

/// A ledger whose storage cannot answer is `unavailable` to the guest; the
/// cause is logged, not shown (it may name paths).
fn unavailable(e: Error) -> BudgetError {
    tracing::error!(error = %e, "budget ledger unavailable");
    BudgetError::Unavailable("the budget ledger's storage failed".into())
}

#[async_trait]
impl BudgetLedger for SqliteLedger {
    async fn reserve(
        &self,
        ctx: &CallContext,
        amount: u64,
        purpose: &str,
    ) -> Result<Reservation, LedgerError> {
        let agent = ctx.agent_id.to_string();
        let (a, p, run) = (agent.clone(), purpose.to_owned(), ctx.run_id.to_string());
        let id = self
            .submit(move |b, fx, now| b.reserve(fx, now, &a, amount, &p, &run))
            .await
            .map_err(storage)??;
        Ok(Reservation {
            id: book::reservation_name(id),
            agent_id: agent,
            amount,
        })
    }

    async fn settle(
        &self,
        reservation: &Reservation,
        used: u64,
    ) -> Result<Settlement, LedgerError> {
        let Some(id) = parse_res_id(&reservation.id) else {
            return Err(LedgerError::UnknownReservation(reservation.id.clone()));
        };
        let (shown, agent) = (reservation.id.clone(), reservation.agent_id.clone());
        let (charged, uncovered) = self
            .submit(move |b, fx, now| b.settle(fx, now, id, &shown, &agent, used))
            .await
            .map_err(storage)??;
        Ok(Settlement { charged, uncovered })
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), LedgerError> {
        let Some(id) = parse_res_id(&reservation.id) else {
            return Err(LedgerError::UnknownReservation(reservation.id.clone()));
        };
        let (shown, agent) = (reservation.id.clone(), reservation.agent_id.clone());
        self.submit(move |b, fx, now| b.release(fx, now, id, &shown, &agent))
            .await
            .map_err(storage)?
    }

    async fn remaining(&self, ctx: &CallContext) -> Result<Balance, BudgetError> {
        match self.balance(&ctx.agent_id).await {
            Ok(b) => Ok(Balance {
                allocated: b.allocated,
                spent: b.spent,
                reserved: b.reserved,
                available: b.available,
            }),
            // No account: no budget is configured for this agent.
            Err(Error::UnknownAccount(_)) => Err(BudgetError::NotConfigured),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn request(
        &self,
        ctx: &CallContext,
        amount: u64,
        reason: String,
    ) -> Result<TokenRequest, BudgetError> {
        let agent = ctx.agent_id.to_string();
        self.submit(move |b, fx, now| b.request(fx, now, &agent, amount, &reason))
            .await
            .map_err(unavailable)?
    }

    async fn poll_request(
        &self,
        ctx: &CallContext,
        id: String,
    ) -> Result<TokenRequest, BudgetError> {
        let Some(n) = parse_req_id(&id) else {
            return Err(BudgetError::UnknownRequest);
        };
        // Scoped to the caller: another agent's id is indistinguishable from
        // one that does not exist.
        let row = sqlx::query(
            "SELECT amount, reason, status FROM token_requests WHERE id = ? AND bot_id = ?",
        )
        .bind(n)
        .bind(&*ctx.agent_id)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| unavailable(e.into()))?
        .ok_or(BudgetError::UnknownRequest)?;
        let status: String = row.try_get("status").map_err(|e| unavailable(e.into()))?;
        Ok(TokenRequest {
            id: req_id(n),
            amount: to_u64(row.try_get("amount").map_err(|e| unavailable(e.into()))?),
            reason: row.try_get("reason").map_err(|e| unavailable(e.into()))?,
            status: parse_status(&status).map_err(unavailable)?,
        })
    }
}
