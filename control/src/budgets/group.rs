//! The lease writer: one task per database applies the lease grants and
//! returns callers queue, in groups, in one transaction each, on a
//! connection of its own; each caller is answered once its group committed.
//!
//! A group reads the leases and accounts it touches (locked: SQLite's write
//! lock, PostgreSQL's row locks), applies the operations to them in Rust,
//! in order (each sees what the previous left, as if run one by one, with
//! `delta_budget_rules`' arithmetic), and writes every change with a few
//! multi-row statements, checking that each wrote the rows it meant to.
//! A refused operation changes nothing; the tables' `CHECK` constraints
//! still guard every row written. If the database fails (or PostgreSQL
//! picks the group as a deadlock's victim), the group is rolled back (its
//! connection closed) and each operation applied again alone, so one
//! failing operation fails only itself.
//!
//! Why groups: each commit waits for the disk (SQLite's WAL frames, or
//! PostgreSQL's WAL flush), and each statement is a round trip (to sqlx's
//! SQLite worker thread, or the server). One statement per operation
//! capped PostgreSQL at 1,100-2,800 grant + return pairs/s; a group costs
//! the same few round trips and one commit whatever its size. The dialects'
//! reads and writes are in `sqlite.rs` and `postgres.rs`.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use delta_budget_rules as rules;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection as _, Row as _};
use tokio::sync::{mpsc, oneshot};

use super::leases::{LeaseDone, LeaseOp};
use super::model::{BudgetError, Lease, LeaseReturn, to_u64};
use super::store::db_key;
use crate::db::{Backend, Db, new_id, utc_month};

/// Most operations in one transaction: enough to share a commit among
/// many callers, few enough to bound how long the others wait for the
/// writer's turn (and the statements' parameters: 14 an entry).
pub(super) const MAX_GROUP: usize = 256;
/// Operations waiting for the writer; callers wait when it is full.
const QUEUE: usize = 4_096;
/// A writer idle this long stops; the next operation starts another.
const IDLE: Duration = Duration::from_secs(10);

struct Job {
    op: LeaseOp,
    reply: oneshot::Sender<Result<LeaseDone, BudgetError>>,
}

/// Each database's writers, by URL: they share one queue.
static WRITERS: LazyLock<std::sync::Mutex<HashMap<String, mpsc::Sender<Job>>>> =
    LazyLock::new(Default::default);

/// Writers per database. SQLite has one writer at a time whatever we do.
/// On PostgreSQL a group spends most of its time waiting for its commit's
/// WAL flush: while one waits, others read, apply and write (row locks
/// order the groups that touch the same rows; each group takes its locks
/// in one order, so they never deadlock each other), and the server
/// flushes their commits together.
fn writers_for(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

fn writer(db: &Db) -> mpsc::Sender<Job> {
    let key = db_key(db);
    let mut writers = WRITERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(w) = writers.get(&key).filter(|w| !w.is_closed()) {
        return w.clone();
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..writers_for(db.backend()) {
        tokio::spawn(run(db.clone(), std::sync::Arc::clone(&rx)));
    }
    writers.insert(key, tx.clone());
    tx
}

/// Queue `op` for the database's writer; its answer once committed.
pub(super) async fn submit(db: &Db, op: LeaseOp) -> Result<LeaseDone, BudgetError> {
    let (reply, answer) = oneshot::channel();
    let mut job = Job { op, reply };
    // A writer that stopped (idle, or its runtime ended) between the
    // lookup and the send: start another once.
    for _ in 0..2 {
        match writer(db).send(job).await {
            Ok(()) => {
                return answer
                    .await
                    .unwrap_or_else(|_| Err(BudgetError::Internal("the lease writer stopped")));
            }
            Err(mpsc::error::SendError(back)) => job = back,
        }
    }
    Err(BudgetError::Internal("the lease writer is not running"))
}

async fn run(db: Db, rx: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    // The writer's own connection, out of the pool: taken from it once
    // (not per group, which pings), and closed (rolling back whatever
    // it had open) if a group fails or the writer stops.
    let mut conn = None;
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    loop {
        // The queue is held only while taking a group, so that the next
        // writer takes the next group while this one commits.
        let taken = {
            let mut rx = rx.lock().await;
            match tokio::time::timeout(IDLE, rx.recv_many(&mut jobs, MAX_GROUP)).await {
                Ok(n) => n,
                Err(_) => {
                    // Idle: refuse new work (every writer of the queue
                    // then stops), then finish what was queued.
                    rx.close();
                    rx.recv_many(&mut jobs, MAX_GROUP).await
                }
            }
        };
        if taken == 0 {
            break;
        }
        commit_group(&db, &mut conn, &mut jobs).await;
    }
    if let Some(conn) = conn
        && let Err(e) = conn.close().await
    {
        tracing::warn!(error = %e, "closing the lease writer's connection");
    }
}

/// Apply `jobs` in one transaction and answer them once it committed,
/// or, if the database failed, each in a transaction of its own.
async fn commit_group(db: &Db, conn: &mut Option<AnyConnection>, jobs: &mut Vec<Job>) {
    let group = std::mem::replace(jobs, Vec::with_capacity(MAX_GROUP));
    let ops: Vec<&LeaseOp> = group.iter().map(|j| &j.op).collect();
    match write(db, conn, &ops).await {
        Ok(results) => {
            for (job, result) in group.into_iter().zip(results) {
                // A caller that went away: its operation stands.
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, operations = group.len(),
                "a group of lease operations failed; applying them one by one");
            for job in group {
                let result = match write(db, conn, &[&job.op]).await {
                    Ok(mut results) => results
                        .pop()
                        .unwrap_or(Err(BudgetError::Internal("an operation went unanswered"))),
                    Err(e) => Err(BudgetError::Db(e)),
                };
                let _ = job.reply.send(result);
            }
        }
    }
}

/// Apply `ops` in one transaction on the writer's connection (taken from
/// the pool if it has none; left `None`, so closed, when the group fails:
/// that rolls back whatever it had open). Refusals are answers; only a
/// database failure is an error, and then nothing of `ops` stands.
async fn write(
    db: &Db,
    conn: &mut Option<AnyConnection>,
    ops: &[&LeaseOp],
) -> Result<Vec<Result<LeaseDone, BudgetError>>, sqlx::Error> {
    match db.backend() {
        Backend::Sqlite => super::sqlite::write(db, conn, ops).await,
        Backend::Postgres => {
            let mut c = match conn.take() {
                Some(c) => c,
                None => db.pool().acquire().await?.detach(),
            };
            let results = super::postgres::write_group(&mut c, ops).await?;
            *conn = Some(c);
            Ok(results)
        }
    }
}

/// The leases a group returns and the agents it touches.
pub(super) fn group_ids<'a>(ops: &[&'a LeaseOp]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut lease_ids: Vec<&str> = Vec::new();
    let mut agent_ids: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            LeaseOp::Grant { agent_id, .. } => agent_ids.push(agent_id),
            LeaseOp::Return { lease_id, .. } => lease_ids.push(lease_id),
        }
    }
    (lease_ids, agent_ids)
}

/// A lease the group returns, as read.
struct SeenLease {
    tenant: String,
    user: String,
    agent: String,
    granted: i64,
    /// What its expiry counted as spent, pending the node's report.
    provisional: i64,
    status: String,
    claim: Claim,
}

/// Whether a lease can still be returned.
enum Claim {
    /// Not returned yet.
    Open,
    /// Returned (before, or earlier in the group): the answer.
    Done(LeaseReturn),
    /// Marked returned without a recorded result (not expected).
    Lost,
}

/// An account the group touches, as read, plus the group's changes.
struct SeenAccount {
    tenant: String,
    user: String,
    period: String,
    allocated: i64,
    spent: i64,
    leased: i64,
    d_spent: i64,
    d_leased: i64,
    /// When the group last changed it (None: unchanged).
    changed_at: Option<i64>,
}

impl SeenAccount {
    fn available(&self) -> i64 {
        rules::available(
            self.allocated,
            self.spent + self.d_spent,
            self.leased + self.d_leased,
        )
    }
}

pub(super) struct Claimed {
    pub(super) id: String,
    pub(super) status: String,
    pub(super) spent: i64,
    pub(super) at: i64,
}

pub(super) struct NewLease {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) user: String,
    pub(super) agent: String,
    pub(super) node: String,
    pub(super) granted: i64,
    pub(super) at: i64,
    pub(super) expires_at: i64,
}

pub(super) struct NewEntry {
    pub(super) tenant: String,
    pub(super) user: String,
    pub(super) agent: String,
    pub(super) kind: &'static str,
    pub(super) amount: i64,
    pub(super) d_spent: i64,
    pub(super) d_leased: i64,
    pub(super) uncovered: i64,
    pub(super) lease_id: String,
    pub(super) counterparty: Option<String>,
    pub(super) note: Option<String>,
    pub(super) period: String,
    pub(super) at: i64,
}

/// What a group read: leases by id, accounts by agent id.
#[derive(Default)]
pub(super) struct Seen {
    leases: HashMap<String, SeenLease>,
    accounts: HashMap<String, SeenAccount>,
}

impl Seen {
    /// Add rows read by a dialect's query: `tag` is `lease` (columns `id`,
    /// `tenant_id`, `user_id`, `agent_id`, `granted`, `status`,
    /// `returned_at_ms`, `provisional`, and the recorded return's
    /// `r_returned`, `r_charged`, `r_uncovered`) or `account` (`id` = the
    /// agent, `tenant_id`, `user_id`, `period`, `allocated`, `spent`,
    /// `leased`).
    pub(super) fn add_rows(&mut self, rows: Vec<AnyRow>) -> Result<(), sqlx::Error> {
        for row in rows {
            let tag: String = row.try_get("tag")?;
            let id: String = row.try_get("id")?;
            let tenant: String = row.try_get("tenant_id")?;
            let user: String = row.try_get("user_id")?;
            if tag == "lease" {
                let status: String = row.try_get("status")?;
                let returned_at: Option<i64> = row.try_get("returned_at_ms")?;
                let recorded: Option<i64> = row.try_get("r_returned")?;
                let claim = match (returned_at, recorded) {
                    (None, _) => Claim::Open,
                    (Some(_), Some(returned)) => Claim::Done(LeaseReturn {
                        lease_id: id.clone(),
                        charged: to_u64(row.try_get::<Option<i64>, _>("r_charged")?.unwrap_or(0)),
                        returned: to_u64(returned),
                        uncovered: to_u64(
                            row.try_get::<Option<i64>, _>("r_uncovered")?.unwrap_or(0),
                        ),
                        status: status.clone(),
                    }),
                    (Some(_), None) => Claim::Lost,
                };
                let lease = SeenLease {
                    tenant,
                    user,
                    agent: row.try_get("agent_id")?,
                    granted: row.try_get("granted")?,
                    provisional: row.try_get("provisional")?,
                    status,
                    claim,
                };
                self.leases.insert(id, lease);
            } else {
                let account = SeenAccount {
                    tenant,
                    user,
                    period: row.try_get("period")?,
                    allocated: row.try_get("allocated")?,
                    spent: row.try_get("spent")?,
                    leased: row.try_get("leased")?,
                    d_spent: 0,
                    d_leased: 0,
                    changed_at: None,
                };
                self.accounts.insert(id, account);
            }
        }
        Ok(())
    }
}

/// What a group writes.
#[derive(Default)]
pub(super) struct Changes {
    /// Leases returned.
    pub(super) claimed: Vec<Claimed>,
    /// Accounts changed: agent id, change of `spent`, of `leased`, when.
    pub(super) accounts: Vec<(String, i64, i64, i64)>,
    pub(super) new_leases: Vec<NewLease>,
    pub(super) entries: Vec<NewEntry>,
}

/// Apply `ops` in order to what was read: each operation's answer, and
/// what the group writes.
pub(super) fn apply(
    ops: &[&LeaseOp],
    mut seen: Seen,
) -> (Vec<Result<LeaseDone, BudgetError>>, Changes) {
    let Seen {
        ref mut leases,
        ref mut accounts,
    } = seen;
    let mut results = Vec::with_capacity(ops.len());
    let mut claimed: Vec<Claimed> = Vec::new();
    let mut new_leases: Vec<NewLease> = Vec::new();
    let mut entries: Vec<NewEntry> = Vec::new();
    for op in ops {
        results.push(match op {
            LeaseOp::Grant {
                node_id,
                agent_id,
                amount,
                min,
                ttl_ms,
                now,
            } => {
                let Some(account) = accounts.get_mut(agent_id) else {
                    results.push(Err(BudgetError::NotFound("agent")));
                    continue;
                };
                match rules::grant_lease(account.available(), *amount, *min) {
                    Err(s) => Err(BudgetError::Exhausted {
                        needed: s.needed,
                        available: s.available,
                    }),
                    Ok(granted) => {
                        account.d_leased += granted;
                        account.changed_at = Some(*now);
                        let lease = Lease {
                            lease_id: new_id("lse"),
                            agent_id: agent_id.clone(),
                            granted: to_u64(granted),
                            expires_at_ms: now.saturating_add(*ttl_ms),
                        };
                        new_leases.push(NewLease {
                            id: lease.lease_id.clone(),
                            tenant: account.tenant.clone(),
                            user: account.user.clone(),
                            agent: agent_id.clone(),
                            node: node_id.clone(),
                            granted,
                            at: *now,
                            expires_at: lease.expires_at_ms,
                        });
                        entries.push(NewEntry {
                            tenant: account.tenant.clone(),
                            user: account.user.clone(),
                            agent: agent_id.clone(),
                            kind: "lease",
                            amount: granted,
                            d_spent: 0,
                            d_leased: granted,
                            uncovered: 0,
                            lease_id: lease.lease_id.clone(),
                            counterparty: Some(node_id.clone()),
                            note: None,
                            period: account.period.clone(),
                            at: *now,
                        });
                        Ok(LeaseDone::Granted(lease))
                    }
                }
            }
            LeaseOp::Return {
                lease_id,
                spent,
                now,
            } => {
                let Some(lease) = leases.get_mut(lease_id) else {
                    results.push(Err(BudgetError::NotFound("lease")));
                    continue;
                };
                match &lease.claim {
                    Claim::Done(answer) => Ok(LeaseDone::Returned(answer.clone())),
                    Claim::Lost => Err(BudgetError::NotFound("lease")),
                    Claim::Open => {
                        // An expired lease's tokens already went back.
                        let (status, held) = if lease.status == "active" {
                            ("returned".to_owned(), lease.granted)
                        } else {
                            (lease.status.clone(), 0)
                        };
                        // No account: the agent was deleted, which
                        // cancelled the lease.
                        let (done, period) = match accounts.get_mut(&lease.agent) {
                            Some(account) => {
                                // A provisional expiry charged the whole
                                // grant: correct it once to what was spent.
                                let done = if held == 0 && lease.provisional > 0 {
                                    rules::correct_provisional(
                                        account.available(),
                                        account.spent + account.d_spent,
                                        lease.provisional,
                                        *spent,
                                    )
                                } else {
                                    rules::return_lease(account.available(), held, *spent)
                                };
                                account.d_spent += done.charged;
                                account.d_leased -= held;
                                account.changed_at = Some(*now);
                                (done, account.period.clone())
                            }
                            None => (rules::lease_returned(held, *spent, 0), utc_month(*now)),
                        };
                        let rules::LeaseReturned {
                            charged,
                            returned,
                            uncovered,
                        } = done;
                        let answer = LeaseReturn {
                            lease_id: lease_id.clone(),
                            charged: to_u64(charged),
                            returned: to_u64(returned),
                            uncovered: to_u64(uncovered),
                            status: status.clone(),
                        };
                        entries.push(NewEntry {
                            tenant: lease.tenant.clone(),
                            user: lease.user.clone(),
                            agent: lease.agent.clone(),
                            kind: "lease_return",
                            amount: returned,
                            d_spent: charged,
                            d_leased: -held,
                            uncovered,
                            lease_id: lease_id.clone(),
                            counterparty: None,
                            note: Some(format!("spent {spent}")),
                            period,
                            at: *now,
                        });
                        claimed.push(Claimed {
                            id: lease_id.clone(),
                            status,
                            spent: *spent,
                            at: *now,
                        });
                        lease.claim = Claim::Done(answer.clone());
                        Ok(LeaseDone::Returned(answer))
                    }
                }
            }
        });
    }

    let mut changed: Vec<(String, i64, i64, i64)> = accounts
        .drain()
        .filter_map(|(agent, a)| a.changed_at.map(|at| (agent, a.d_spent, a.d_leased, at)))
        .collect();
    // In one order on every replica, as they were locked.
    changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    (
        results,
        Changes {
            claimed,
            accounts: changed,
            new_leases,
            entries,
        },
    )
}
