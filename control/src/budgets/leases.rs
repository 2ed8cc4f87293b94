//! Lease grants, returns and expiry: the operations nodes' lease endpoints call, routed to PostgreSQL's one-statement forms or SQLite's group writer.

use delta_budget_rules as rules;
use sqlx::AnyConnection;
use sqlx::Row as _;

use crate::db::{Backend, Db};

use super::accounts::*;
use super::model::*;
use super::postgres::*;
use super::store::*;

/// Reserve up to `amount` (at least `min_amount`, at least 1) of
/// `agent_id`'s available tokens for `node_id` until `now + ttl_ms`.
///
/// One conditional UPDATE checks and takes the tokens: concurrent grants
/// queue on the account's row and each sees what the others left.
pub async fn grant_lease(
    db: &Db,
    node_id: &str,
    agent_id: &str,
    amount: u64,
    min_amount: u64,
    ttl_ms: i64,
    now: i64,
) -> Result<Lease, BudgetError> {
    let min = rules::lease_minimum(amount, min_amount)
        .map_err(|e| BudgetError::Invalid(e.to_string()))?;
    let op = LeaseOp::Grant {
        node_id: node_id.to_owned(),
        agent_id: agent_id.to_owned(),
        amount: to_i64(amount, "amount")?,
        min: to_i64(min, "min_amount")?,
        ttl_ms,
        now,
    };
    match run_lease_op(db, op).await {
        Ok(LeaseDone::Granted(lease)) => Ok(lease),
        Ok(LeaseDone::Returned(_)) => Err(BudgetError::Internal("a grant answered a return")),
        Err(BudgetError::NotFound(_)) => {
            // No account: an unknown agent, or one from before budgets
            // existed, which has nothing to lease.
            let mut conn = db.pool().acquire().await?;
            match agent_facts(&mut conn, agent_id).await? {
                Some(_) => Err(BudgetError::Exhausted {
                    needed: min,
                    available: 0,
                }),
                None => Err(BudgetError::NotFound("agent")),
            }
        }
        Err(e) => Err(e),
    }
}

/// Return lease `lease_id` having spent `spent` tokens of it.
///
/// The lease is claimed first (one conditional UPDATE), so a return is
/// applied once: a second return answers the stored result. An active
/// lease's tokens go back and `spent` is charged, as far as the budget
/// allows (the rest is `uncovered`); an expired lease's tokens went back
/// already, so `spent` is charged from what is available now.
pub async fn return_lease(
    db: &Db,
    lease_id: &str,
    spent: u64,
    now: i64,
) -> Result<LeaseReturn, BudgetError> {
    let op = LeaseOp::Return {
        lease_id: lease_id.to_owned(),
        spent: to_i64(spent, "spent")?,
        now,
    };
    match run_lease_op(db, op).await? {
        LeaseDone::Returned(done) => Ok(done),
        LeaseDone::Granted(_) => Err(BudgetError::Internal("a return answered a grant")),
    }
}

// ---- lease operations: alone or in groups ----------------------------------

/// A lease grant or return, as queued.
#[derive(Debug)]
pub(super) enum LeaseOp {
    Grant {
        node_id: String,
        agent_id: String,
        amount: i64,
        min: i64,
        ttl_ms: i64,
        now: i64,
    },
    Return {
        lease_id: String,
        spent: i64,
        now: i64,
    },
}

/// What a [`LeaseOp`] did.
#[derive(Debug)]
pub(super) enum LeaseDone {
    Granted(Lease),
    Returned(LeaseReturn),
}

/// Run a lease operation. On PostgreSQL each is one statement, its own
/// transaction ([`grant_pg`], [`return_pg`]): they run side by side,
/// queuing only on the same account's row. On SQLite, where writers take
/// turns anyway, concurrent callers' operations are grouped into one
/// transaction by a writer task ([`group`]). Each caller is answered once its
/// operation committed.
pub(super) async fn run_lease_op(db: &Db, op: LeaseOp) -> Result<LeaseDone, BudgetError> {
    match (db.backend(), op) {
        (
            Backend::Postgres,
            LeaseOp::Grant {
                node_id,
                agent_id,
                amount,
                min,
                ttl_ms,
                now,
            },
        ) => grant_pg(db, &node_id, &agent_id, amount, min, ttl_ms, now)
            .await
            .map(LeaseDone::Granted),
        (
            Backend::Postgres,
            LeaseOp::Return {
                lease_id,
                spent,
                now,
            },
        ) => return_pg(db, &lease_id, spent, now)
            .await
            .map(LeaseDone::Returned),
        (Backend::Sqlite, op) => super::sqlite::submit(db, op).await,
    }
}

/// Expire the active leases whose time is up (at most a batch per call):
/// their tokens go back to their agents. Returns how many expired. Each
/// lease is its own transaction, holding the lease's row and then its
/// account's, as a return does.
pub async fn expire_leases(db: &Db, now_ms: i64) -> Result<u64, sqlx::Error> {
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM budget_leases WHERE status = 'active' AND expires_at_ms <= $1 \
         ORDER BY expires_at_ms LIMIT $2",
    )
    .bind(now_ms)
    .bind(EXPIRY_BATCH)
    .fetch_all(db.pool())
    .await?;
    let mut expired = 0;
    for id in due {
        let mut w = Write::begin(db).await?;
        let result = expire_in(w.conn(), &id, now_ms).await;
        match w.finish(result).await {
            Ok(true) => expired += 1,
            Ok(false) => {}
            Err(BudgetError::Db(e)) => return Err(e),
            Err(e) => return Err(sqlx::Error::Protocol(e.to_string())),
        }
    }
    Ok(expired)
}

pub(super) async fn expire_in(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<bool, BudgetError> {
    // The node may have been killed and served tokens it never reported:
    // the whole grant counts as spent (`rules::expire_lease`), recorded as
    // provisional until the node reports the lease's real spend.
    let Some(lease) = sqlx::query(
        "UPDATE budget_leases SET status = 'expired', provisional_spent = granted \
         WHERE id = $1 AND status = 'active' AND expires_at_ms <= $2 \
         RETURNING tenant_id, user_id, agent_id, granted",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?
    else {
        // Returned (or expired) meanwhile.
        return Ok(false);
    };
    let tenant: String = lease.try_get("tenant_id")?;
    let user: String = lease.try_get("user_id")?;
    let agent: String = lease.try_get("agent_id")?;
    let granted: i64 = lease.try_get("granted")?;
    let rules::LeaseExpired { charged, d_held } = rules::expire_lease(granted);
    let period: Option<String> = sqlx::query_scalar(
        "UPDATE budget_accounts SET spent = spent + $2, leased = leased + $3, \
         updated_at_ms = $4 WHERE agent_id = $1 RETURNING period",
    )
    .bind(&agent)
    .bind(charged)
    .bind(d_held)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(period) = period {
        insert_entry(
            conn,
            Entry {
                tenant: &tenant,
                user: &user,
                agent: Some(&agent),
                kind: "lease_expired",
                amount: granted,
                d_spent: charged,
                d_leased: d_held,
                lease_id: Some(id),
                note: Some("provisional: unreturned remainder counted as spent"),
                period: &period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
    }
    Ok(true)
}
