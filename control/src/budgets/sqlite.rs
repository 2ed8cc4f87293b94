//! The SQLite lease writer: one task per database applies the operations
//! callers queue, in groups, on a connection of its own.
//!
//! Each query through sqlx's SQLite driver is a round trip to the
//! connection's worker thread, and each commit writes every page the
//! transaction touched to the WAL, so a group costs two queries and one
//! commit whatever its size. Under this module's turn, the first query
//! begins an `IMMEDIATE` transaction (SQLite's write lock: no connection
//! changes anything until the commit, so what is read stays true) and reads
//! the group's leases and accounts; the operations are applied to them in
//! Rust, in order (each sees what the previous left, as if run one by one);
//! the second query writes every change with a few multi-row statements
//! (`UPDATE ... FROM (VALUES ...)`, multi-row `INSERT`s; anonymous `?`
//! parameters, see [`Db::values_list`]), checks that each wrote the rows it
//! meant to, and commits. A refused operation changes nothing; the `CHECK`
//! constraints still guard every row written. If the database fails, the
//! group is rolled back (its connection closed), and each operation applied
//! again alone, so one failing operation fails only itself.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use delta_budget_rules as rules;
use sqlx::{AnyConnection, Connection as _, Row as _};
use tokio::sync::{mpsc, oneshot};

use super::leases::{LeaseDone, LeaseOp};
use super::model::{BudgetError, Lease, LeaseReturn, to_u64};
use super::store::{db_key, sqlite_turn};
use crate::db::{Db, new_id, utc_month};

/// Most operations in one transaction: enough to share a commit among
/// many callers, few enough to bound how long the others wait for the
/// writer's turn (and the statements' parameters: 14 an entry).
const MAX_GROUP: usize = 256;
/// Operations waiting for the writer; callers wait when it is full.
const QUEUE: usize = 4_096;
/// A writer idle this long stops; the next operation starts another.
const IDLE: Duration = Duration::from_secs(10);

struct Job {
    op: LeaseOp,
    reply: oneshot::Sender<Result<LeaseDone, BudgetError>>,
}

/// One writer per SQLite database, by URL.
static WRITERS: LazyLock<std::sync::Mutex<HashMap<String, mpsc::Sender<Job>>>> =
    LazyLock::new(Default::default);

fn writer(db: &Db) -> mpsc::Sender<Job> {
    let key = db_key(db);
    let mut writers = WRITERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(w) = writers.get(&key).filter(|w| !w.is_closed()) {
        return w.clone();
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(db.clone(), rx));
    writers.insert(key, tx.clone());
    tx
}

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

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    // The writer's own connection, out of the pool: taken from it once
    // (not per group, which pings), and closed (rolling back whatever
    // it had open) if a group fails or the writer stops.
    let mut conn = None;
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    loop {
        match tokio::time::timeout(IDLE, rx.recv_many(&mut jobs, MAX_GROUP)).await {
            Ok(0) => break,
            Ok(_) => commit_group(&db, &mut conn, &mut jobs).await,
            Err(_) => {
                // Refuse new work, then finish what was queued.
                rx.close();
                while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
                    commit_group(&db, &mut conn, &mut jobs).await;
                }
                break;
            }
        }
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

/// Apply `ops` in one transaction on the writer's connection, holding
/// this module's turn. Refusals are answers; only a database failure is
/// an error, and then nothing of `ops` stands.
async fn write(
    db: &Db,
    conn: &mut Option<AnyConnection>,
    ops: &[&LeaseOp],
) -> Result<Vec<Result<LeaseDone, BudgetError>>, sqlx::Error> {
    let _turn = sqlite_turn(db).lock_owned().await;
    let mut c = match conn.take() {
        Some(c) => c,
        None => {
            let mut c = db.pool().acquire().await?.detach();
            // A multi-row statement inside a transaction keeps a
            // statement journal (to undo just that statement); in
            // memory rather than spilled to a temporary file, which
            // cost a tenth of a group's time.
            sqlx::query("PRAGMA temp_store = MEMORY")
                .execute(&mut c)
                .await?;
            sqlx::query(GUARD).execute(&mut c).await?;
            c
        }
    };
    // The transaction is begun by the group's first query (saving a
    // round trip), so sqlx does not track it: on any error the
    // connection is closed, which rolls back whatever it had open.
    let results = apply_group(&mut c, ops).await?;
    *conn = Some(c);
    Ok(results)
}

/// On the writer's connection (in its `temp` schema): a table whose
/// inserts only check that the statement before wrote as many rows as
/// it meant to ([`CHECK`] after each of a group's writes), aborting the
/// group (before its `COMMIT`, in the same query) if not. Under the
/// write lock, what the group read cannot change, so this is a guard
/// against a defect, not an expected path.
const GUARD: &str = "CREATE TEMP TABLE IF NOT EXISTS lease_group_written \
     (written BIGINT NOT NULL, expected BIGINT NOT NULL); \
     CREATE TEMP TRIGGER IF NOT EXISTS lease_group_written_check \
     BEFORE INSERT ON lease_group_written BEGIN \
     SELECT RAISE(ABORT, 'a group of lease operations did not write the rows it meant to') \
     WHERE NEW.written <> NEW.expected; \
     SELECT RAISE(IGNORE); \
     END";
/// After a write: `changes()` is the rows the statement before wrote;
/// the parameter, how many it should have.
const CHECK: &str = "INSERT INTO temp.lease_group_written VALUES (changes(), ?); ";

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

struct Claimed {
    id: String,
    status: String,
    spent: i64,
    at: i64,
}

struct NewLease {
    id: String,
    tenant: String,
    user: String,
    agent: String,
    node: String,
    granted: i64,
    at: i64,
    expires_at: i64,
}

struct NewEntry {
    tenant: String,
    user: String,
    agent: String,
    kind: &'static str,
    amount: i64,
    d_spent: i64,
    d_leased: i64,
    uncovered: i64,
    lease_id: String,
    counterparty: Option<String>,
    note: Option<String>,
    period: String,
    at: i64,
}

/// `n` copies of `row`, comma-separated (rows of anonymous `?`
/// placeholders: see [`Db::values_list`]).
fn rows(row: &str, n: usize) -> String {
    let mut out = String::with_capacity((row.len() + 2) * n);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(row);
    }
    out
}

async fn apply_group(
    conn: &mut AnyConnection,
    ops: &[&LeaseOp],
) -> Result<Vec<Result<LeaseDone, BudgetError>>, sqlx::Error> {
    let mut lease_ids: Vec<&str> = Vec::new();
    let mut agent_ids: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            LeaseOp::Grant { agent_id, .. } => agent_ids.push(agent_id),
            LeaseOp::Return { lease_id, .. } => lease_ids.push(lease_id),
        }
    }

    // Begin (taking the write lock now, so what is read stays true
    // until the commit) and read the leases (with a returned one's
    // recorded result) and the accounts involved.
    let mut sql = String::from("BEGIN IMMEDIATE; ");
    if !lease_ids.is_empty() {
        let ids = rows("?", lease_ids.len());
        let _ = write!(
            sql,
            "SELECT 'lease' AS tag, l.id AS id, l.tenant_id AS tenant_id, \
             l.user_id AS user_id, l.agent_id AS agent_id, l.granted AS granted, \
             l.status AS status, l.returned_at_ms AS returned_at_ms, \
             l.provisional_spent AS provisional, \
             e.amount AS r_returned, e.d_spent AS r_charged, e.uncovered AS r_uncovered, \
             NULL AS period, NULL AS allocated, NULL AS spent, NULL AS leased \
             FROM budget_leases l LEFT JOIN budget_entries e \
             ON e.lease_id = l.id AND e.kind = 'lease_return' WHERE l.id IN ({ids}) \
             UNION ALL "
        );
    }
    let _ = write!(
        sql,
        "SELECT 'account' AS tag, agent_id AS id, tenant_id, user_id, agent_id, \
         NULL AS granted, NULL AS status, NULL AS returned_at_ms, NULL AS provisional, \
         NULL AS r_returned, \
         NULL AS r_charged, NULL AS r_uncovered, period, allocated, spent, leased \
         FROM budget_accounts \
         WHERE agent_id IN ({}) OR agent_id IN \
         (SELECT agent_id FROM budget_leases WHERE id IN ({}))",
        rows("?", agent_ids.len()),
        rows("?", lease_ids.len()),
    );
    let mut read = sqlx::query(&sql);
    for id in lease_ids.iter().chain(&agent_ids).chain(&lease_ids) {
        read = read.bind(*id);
    }
    let mut leases: HashMap<String, SeenLease> = HashMap::new();
    let mut accounts: HashMap<String, SeenAccount> = HashMap::new();
    for row in read.fetch_all(&mut *conn).await? {
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
                    uncovered: to_u64(row.try_get::<Option<i64>, _>("r_uncovered")?.unwrap_or(0)),
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
            leases.insert(id, lease);
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
            accounts.insert(id, account);
        }
    }

    // Apply the operations in order.
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

    // Write every change, check each statement wrote the rows it meant
    // to (see [`GUARD`]) and commit, in one multi-statement query.
    let changed: Vec<(&String, &SeenAccount)> = accounts
        .iter()
        .filter(|(_, a)| a.changed_at.is_some())
        .collect();
    let mut sql = String::new();
    if !claimed.is_empty() {
        let _ = write!(
            sql,
            "UPDATE budget_leases SET status = v.column2, spent = v.column3, \
             returned_at_ms = v.column4 FROM (VALUES {}) AS v \
             WHERE budget_leases.id = v.column1 \
             AND budget_leases.returned_at_ms IS NULL; {CHECK}",
            rows("(?, ?, ?, ?)", claimed.len())
        );
    }
    if !changed.is_empty() {
        let _ = write!(
            sql,
            "UPDATE budget_accounts SET spent = spent + v.column2, \
             leased = leased + v.column3, updated_at_ms = v.column4 \
             FROM (VALUES {}) AS v WHERE budget_accounts.agent_id = v.column1; {CHECK}",
            rows("(?, ?, ?, ?)", changed.len())
        );
    }
    if !new_leases.is_empty() {
        let _ = write!(
            sql,
            "INSERT INTO budget_leases (id, tenant_id, user_id, agent_id, node_id, granted, \
             spent, status, created_at_ms, expires_at_ms, returned_at_ms) VALUES {}; {CHECK}",
            rows(
                "(?, ?, ?, ?, ?, ?, NULL, 'active', ?, ?, NULL)",
                new_leases.len()
            )
        );
    }
    if !entries.is_empty() {
        let _ = write!(
            sql,
            "INSERT INTO budget_entries (id, tenant_id, user_id, agent_id, kind, amount, \
             d_allocated, d_spent, d_leased, d_grant, d_monthly, d_carved, d_retired, \
             uncovered, lease_id, request_id, counterparty, note, period, at_ms) VALUES {}; \
             {CHECK}",
            rows(
                "(?, ?, ?, ?, ?, ?, 0, ?, ?, 0, 0, 0, 0, ?, ?, NULL, ?, ?, ?, ?)",
                entries.len()
            )
        );
    }
    sql.push_str("COMMIT");
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let mut q = sqlx::query(&sql);
    for c in &claimed {
        q = q.bind(&c.id).bind(&c.status).bind(c.spent).bind(c.at);
    }
    if !claimed.is_empty() {
        q = q.bind(count(claimed.len()));
    }
    for (agent, a) in &changed {
        q = q
            .bind(agent.as_str())
            .bind(a.d_spent)
            .bind(a.d_leased)
            .bind(a.changed_at);
    }
    if !changed.is_empty() {
        q = q.bind(count(changed.len()));
    }
    for l in &new_leases {
        q = q
            .bind(&l.id)
            .bind(&l.tenant)
            .bind(&l.user)
            .bind(&l.agent)
            .bind(&l.node)
            .bind(l.granted)
            .bind(l.at)
            .bind(l.expires_at);
    }
    if !new_leases.is_empty() {
        q = q.bind(count(new_leases.len()));
    }
    for e in &entries {
        q = q
            .bind(new_id("ben"))
            .bind(&e.tenant)
            .bind(&e.user)
            .bind(&e.agent)
            .bind(e.kind)
            .bind(e.amount)
            .bind(e.d_spent)
            .bind(e.d_leased)
            .bind(e.uncovered)
            .bind(&e.lease_id)
            .bind(e.counterparty.as_deref())
            .bind(e.note.as_deref())
            .bind(&e.period)
            .bind(e.at);
    }
    if !entries.is_empty() {
        q = q.bind(count(entries.len()));
    }
    q.execute(&mut *conn).await?;
    Ok(results)
}
