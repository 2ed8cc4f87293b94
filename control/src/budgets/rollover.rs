//! The month roll-over (`delta_budget_rules::{rollover_bot, rollover_main}`).

use std::collections::HashMap;

use delta_budget_rules as rules;
use sqlx::AnyConnection;
use sqlx::Row as _;

use crate::db::{Db, utc_month};

use super::model::*;
use super::requests::*;
use super::store::*;

// ---- roll-over -------------------------------------------------------------

/// Start the period of `now_ms` (its UTC month) for every user still in an
/// earlier one; returns how many users rolled over. Per user, in one
/// transaction under the user's lock: spent goes to 0; a bot's allocation
/// goes back to its grant, or to what its leases hold if that is more (a
/// lease outstanding stays counted); a main agent's to its grant minus its
/// bots' new allocations; the user's `carved` becomes the sum of its main
/// agents' grants (what deleted agents spent comes back to the pool);
/// pending requests expire.
pub async fn roll_over_due(db: &Db, now_ms: i64) -> Result<u64, sqlx::Error> {
    let period = utc_month(now_ms);
    let due = sqlx::query("SELECT tenant_id, user_id FROM budget_users WHERE period < $1")
        .bind(&period)
        .fetch_all(db.pool())
        .await?;
    let mut rolled = 0;
    for row in due {
        let tenant: String = row.try_get("tenant_id")?;
        let user: String = row.try_get("user_id")?;
        let mut w = Write::begin(db).await?;
        let result = roll_over_in(w.conn(), &tenant, &user, &period, now_ms).await;
        match w.finish(result).await {
            Ok(true) => rolled += 1,
            Ok(false) => {}
            Err(BudgetError::Db(e)) => return Err(e),
            Err(e) => return Err(sqlx::Error::Protocol(e.to_string())),
        }
    }
    Ok(rolled)
}

pub(super) async fn roll_over_in(
    conn: &mut AnyConnection,
    tenant: &str,
    user: &str,
    period: &str,
    now: i64,
) -> Result<bool, BudgetError> {
    let Some(u) = lock_user(conn, tenant, user, now).await? else {
        return Ok(false);
    };
    if !rules::rolls_over(&u.period, period) {
        // Another replica got here first.
        return Ok(false);
    }
    // Allocations only change under the user's lock, so these are current;
    // spent and leased may move meanwhile, and are read back per row.
    let accounts = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM budget_accounts WHERE tenant_id = $1 AND user_id = $2 \
         ORDER BY agent_id"
    ))
    .bind(tenant)
    .bind(user)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(account_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    let note = format!("roll-over from {}", u.period);
    let mut to_bots: HashMap<String, i64> = HashMap::new();
    for a in accounts.iter().filter(|a| a.kind == "bot") {
        let row = sqlx::query(
            "UPDATE budget_accounts SET \
             allocated = CASE WHEN leased > grant_amount THEN leased ELSE grant_amount END, \
             last_op_amount = spent, spent = 0, period = $2, updated_at_ms = $3 \
             WHERE agent_id = $1 RETURNING allocated, last_op_amount",
        )
        .bind(&a.agent_id)
        .bind(period)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        let allocated: i64 = row.try_get("allocated")?;
        let old_spent: i64 = row.try_get("last_op_amount")?;
        if let Some(p) = &a.parent {
            *to_bots.entry(p.clone()).or_default() += allocated;
        }
        rollover_entry(conn, a, allocated, old_spent, &note, period, now).await?;
    }
    let mut carved = 0;
    for a in accounts.iter().filter(|a| a.kind != "bot") {
        let allocated =
            rules::rollover_main(a.grant, to_bots.get(&a.agent_id).copied().unwrap_or(0)).map_err(
                |_| {
                    BudgetError::Internal("roll-over: a main agent's bots hold more than its grant")
                },
            )?;
        let row = sqlx::query(
            "UPDATE budget_accounts SET allocated = $2, last_op_amount = spent, spent = 0, \
             period = $3, updated_at_ms = $4 WHERE agent_id = $1 RETURNING last_op_amount",
        )
        .bind(&a.agent_id)
        .bind(allocated)
        .bind(period)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        let old_spent: i64 = row.try_get("last_op_amount")?;
        carved += a.grant;
        rollover_entry(conn, a, allocated, old_spent, &note, period, now).await?;
    }
    sqlx::query(
        "UPDATE budget_users SET period = $3, carved = $4, retired = 0, updated_at_ms = $5 \
         WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant)
    .bind(user)
    .bind(period)
    .bind(carved)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    insert_entry(
        conn,
        Entry {
            tenant,
            user,
            kind: "rollover",
            amount: u.monthly_allocation,
            d_carved: carved - u.carved,
            d_retired: -u.retired,
            note: Some(&note),
            period,
            at: now,
            ..Entry::default()
        },
    )
    .await?;
    let expired = sqlx::query(&format!(
        "UPDATE token_requests SET status = 'expired', decided_by = 'roll-over', \
         decided_at_ms = $3 WHERE tenant_id = $1 AND user_id = $2 AND status = 'pending' \
         RETURNING {REQUEST_COLUMNS}"
    ))
    .bind(tenant)
    .bind(user)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    expired_requests_audit(conn, &expired, "roll-over", now).await?;
    Ok(true)
}

pub(super) async fn rollover_entry(
    conn: &mut AnyConnection,
    a: &AccountRow,
    allocated: i64,
    old_spent: i64,
    note: &str,
    period: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    insert_entry(
        conn,
        Entry {
            tenant: &a.tenant_id,
            user: &a.user_id,
            agent: Some(&a.agent_id),
            kind: "rollover",
            amount: allocated,
            d_allocated: allocated - a.allocated,
            d_spent: -old_spent,
            note: Some(note),
            period,
            at: now,
            ..Entry::default()
        },
    )
    .await
}
