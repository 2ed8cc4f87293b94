//! Lease grants and returns on PostgreSQL: one statement each (data-modifying CTEs), the rules of `delta_budget_rules::{grant_lease, return_lease}` in SQL so that the check and the change are one atomic step.

use delta_budget_rules as rules;
use sqlx::AnyConnection;
use sqlx::Row as _;

use crate::db::{Db, new_id, utc_month};

use super::model::*;

/// A grant on PostgreSQL: one statement (its own transaction) checks and
/// takes the tokens with a conditional `UPDATE` of the account's row, on
/// which concurrent grants queue and re-check, and inserts the lease and its
/// entry from what that `UPDATE` returned; a refusal writes nothing.
pub(super) async fn grant_pg(
    db: &Db,
    node_id: &str,
    agent_id: &str,
    amount: i64,
    min: i64,
    ttl_ms: i64,
    now: i64,
) -> Result<Lease, BudgetError> {
    let lease_id = new_id("lse");
    let expires_at_ms = now.saturating_add(ttl_ms);
    let taken = sqlx::query(
        "WITH a AS (UPDATE budget_accounts SET \
         last_op_amount = LEAST(allocated - spent - leased, $2), \
         leased = leased + LEAST(allocated - spent - leased, $2), \
         updated_at_ms = $4 \
         WHERE agent_id = $1 AND allocated - spent - leased >= $3 \
         RETURNING tenant_id, user_id, period, last_op_amount), \
         l AS (INSERT INTO budget_leases (id, tenant_id, user_id, agent_id, node_id, granted, \
         spent, status, created_at_ms, expires_at_ms, returned_at_ms) \
         SELECT $5, tenant_id, user_id, $1, $6, last_op_amount, NULL, 'active', $4, $7, NULL \
         FROM a), \
         e AS (INSERT INTO budget_entries (id, tenant_id, user_id, agent_id, kind, amount, \
         d_allocated, d_spent, d_leased, d_grant, d_monthly, d_carved, d_retired, uncovered, \
         lease_id, request_id, counterparty, note, period, at_ms) \
         SELECT $8, tenant_id, user_id, $1, 'lease', last_op_amount, 0, 0, last_op_amount, \
         0, 0, 0, 0, 0, $5, NULL, $6, NULL, period, $4 FROM a) \
         SELECT last_op_amount FROM a",
    )
    .bind(agent_id)
    .bind(amount)
    .bind(min)
    .bind(now)
    .bind(&lease_id)
    .bind(node_id)
    .bind(expires_at_ms)
    .bind(new_id("ben"))
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = taken else {
        let mut conn = db.pool().acquire().await?;
        let available: Option<i64> = sqlx::query_scalar(
            "SELECT allocated - spent - leased FROM budget_accounts WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_optional(&mut *conn)
        .await?;
        return Err(match available {
            Some(a) => BudgetError::Exhausted {
                needed: to_u64(min),
                available: to_u64(a),
            },
            None => BudgetError::NotFound("agent"),
        });
    };
    let granted: i64 = row.try_get("last_op_amount")?;
    Ok(Lease {
        lease_id,
        agent_id: agent_id.to_owned(),
        granted: to_u64(granted),
        expires_at_ms,
    })
}

/// A return on PostgreSQL: one statement (its own transaction) claims the
/// lease (a conditional `UPDATE`, so a return is applied once), then updates
/// its account (the lease's row locked before the account's, as everywhere)
/// and inserts the entry. An unclaimed lease answers the stored result.
pub(super) async fn return_pg(
    db: &Db,
    lease_id: &str,
    spent: i64,
    now: i64,
) -> Result<LeaseReturn, BudgetError> {
    let done = sqlx::query(
        "WITH l AS (UPDATE budget_leases SET \
         status = CASE WHEN status = 'active' THEN 'returned' ELSE status END, \
         spent = $2, returned_at_ms = $3 \
         WHERE id = $1 AND returned_at_ms IS NULL \
         RETURNING tenant_id, user_id, agent_id, status, \
         CASE WHEN status = 'returned' THEN granted ELSE 0 END AS held, \
         CASE WHEN status = 'expired' THEN provisional_spent ELSE 0 END AS pc), \
         a AS (UPDATE budget_accounts SET \
         last_op_amount = CASE WHEN $2 >= l.pc \
         THEN GREATEST(LEAST(allocated - spent - leased + l.held, $2 - l.pc), 0) \
         ELSE -LEAST(l.pc - $2, GREATEST(spent, 0)) END, \
         spent = spent + CASE WHEN $2 >= l.pc \
         THEN GREATEST(LEAST(allocated - spent - leased + l.held, $2 - l.pc), 0) \
         ELSE -LEAST(l.pc - $2, GREATEST(spent, 0)) END, \
         leased = leased - l.held, updated_at_ms = $3 \
         FROM l WHERE budget_accounts.agent_id = l.agent_id \
         RETURNING budget_accounts.period, budget_accounts.last_op_amount), \
         r AS (SELECT l.tenant_id, l.user_id, l.agent_id, l.status, l.held, l.pc, \
         COALESCE(a.last_op_amount, 0) AS charged, COALESCE(a.period, $4) AS period \
         FROM l LEFT JOIN a ON TRUE), \
         e AS (INSERT INTO budget_entries (id, tenant_id, user_id, agent_id, kind, amount, \
         d_allocated, d_spent, d_leased, d_grant, d_monthly, d_carved, d_retired, uncovered, \
         lease_id, request_id, counterparty, note, period, at_ms) \
         SELECT $5, tenant_id, user_id, agent_id, 'lease_return', \
         CASE WHEN pc > 0 THEN GREATEST(-charged, 0) ELSE held - LEAST($2, held) END, \
         0, charged, -held, 0, 0, 0, 0, \
         CASE WHEN $2 >= pc THEN $2 - pc - charged ELSE 0 END, \
         $1, NULL, NULL, $6, period, $3 FROM r) \
         SELECT status, held, pc, charged FROM r",
    )
    .bind(lease_id)
    .bind(spent)
    .bind(now)
    .bind(utc_month(now))
    .bind(new_id("ben"))
    .bind(format!("spent {spent}"))
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = done else {
        // Returned before (or unknown): answer what the first return did.
        let mut conn = db.pool().acquire().await?;
        return stored_return(&mut conn, lease_id)
            .await?
            .ok_or(BudgetError::NotFound("lease"));
    };
    // The statement charged `LEAST(available + held, spent)`
    // (`rules::return_lease`), or corrected a provisional expiry
    // (`rules::correct_provisional`: negative when credited back); the rest
    // follows from it.
    let pc: i64 = row.try_get("pc")?;
    let charged: i64 = row.try_get("charged")?;
    let done = if pc > 0 {
        rules::LeaseReturned {
            charged,
            returned: charged.saturating_neg().max(0),
            uncovered: if spent >= pc { spent - pc - charged } else { 0 },
        }
    } else {
        rules::lease_returned(row.try_get("held")?, spent, charged)
    };
    Ok(LeaseReturn {
        lease_id: lease_id.to_owned(),
        charged: to_u64(done.charged),
        returned: to_u64(done.returned),
        uncovered: to_u64(done.uncovered),
        status: row.try_get("status")?,
    })
}

/// The result of a lease's return, as recorded.
pub(super) async fn stored_return(
    conn: &mut AnyConnection,
    lease_id: &str,
) -> Result<Option<LeaseReturn>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT l.status, e.amount, e.d_spent, e.uncovered FROM budget_leases l \
         JOIN budget_entries e ON e.lease_id = l.id AND e.kind = 'lease_return' \
         WHERE l.id = $1",
    )
    .bind(lease_id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(LeaseReturn {
            lease_id: lease_id.to_owned(),
            charged: to_u64(r.try_get("d_spent")?),
            returned: to_u64(r.try_get("amount")?),
            uncovered: to_u64(r.try_get("uncovered")?),
            status: r.try_get("status")?,
        })
    })
    .transpose()
}
