//! Token requests: a bot asks its main agent for tokens (the decision is `delta_budget_rules::request_outcome`'s), admins or owners decide, old ones expire.

use delta_budget_rules as rules;
use serde_json::json;
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::audit;
use crate::db::{Db, new_id, utc_month};

use super::model::*;
use super::store::*;

pub(super) const REQUEST_COLUMNS: &str = "id, tenant_id, user_id, bot_agent_id, parent_agent_id, amount, \
     reason, status, decided_by, decided_at_ms, created_at_ms";

pub(super) fn request_from_row(row: &AnyRow) -> Result<TokenRequest, sqlx::Error> {
    Ok(TokenRequest {
        id: row.try_get("id")?,
        agent_id: row.try_get("bot_agent_id")?,
        parent_agent_id: row.try_get("parent_agent_id")?,
        amount: to_u64(row.try_get("amount")?),
        reason: row.try_get("reason")?,
        status: row.try_get("status")?,
        decided_by: row.try_get("decided_by")?,
        decided_at_ms: row.try_get("decided_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// A bot asks its main agent for `amount` tokens. Refused with
/// [`BudgetError::NoParent`] for a main agent and
/// [`BudgetError::InvalidAmount`] for 0 or more than the parent's
/// `max_request`; approved at once (the tokens move) when within the
/// parent's `auto_approve_limit` and the parent can cover it; pending
/// otherwise. Audited in the same transaction.
pub async fn request_tokens(
    db: &Db,
    by: Requester<'_>,
    agent_id: &str,
    amount: u64,
    reason: &str,
    now: i64,
) -> Result<TokenRequest, BudgetError> {
    // Characters, not bytes: the document's maxLength counts characters.
    if reason.chars().count() > MAX_REASON || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(BudgetError::Invalid(format!(
            "reason must be at most {MAX_REASON} characters without control characters"
        )));
    }
    let bot = load_account(db, agent_id)
        .await?
        .filter(|a| by.tenant.is_none_or(|t| t == a.tenant_id))
        .ok_or(BudgetError::NotFound("agent"))?;
    let Some(parent) = bot.parent.clone().filter(|_| bot.kind == "bot") else {
        return Err(BudgetError::NoParent);
    };
    let mut w = Write::begin(db).await?;
    let result = request_in(w.conn(), by, &bot, &parent, amount, reason, now).await;
    w.finish(result).await
}

pub(super) async fn request_in(
    conn: &mut AnyConnection,
    by: Requester<'_>,
    bot: &AccountRow,
    parent: &str,
    amount: u64,
    reason: &str,
    now: i64,
) -> Result<TokenRequest, BudgetError> {
    let (tenant, user) = (&bot.tenant_id, &bot.user_id);
    lock_user(conn, tenant, user, now)
        .await?
        .ok_or(BudgetError::NotFound("agent"))?;
    let limits = sqlx::query(
        "SELECT auto_approve_limit, max_request FROM budget_accounts WHERE agent_id = $1",
    )
    .bind(parent)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(BudgetError::NotFound("parent budget"))?;
    let auto: i64 = limits.try_get("auto_approve_limit")?;
    let max: i64 = limits.try_get("max_request")?;
    let a = rules::request_amount(amount, max)
        .map_err(|e| BudgetError::InvalidAmount { limit: e.limit })?;
    let id = new_id("tkr");
    // `rules::request_outcome`, with the parent's cover checked by the
    // conditional UPDATE that moves the tokens (atomic with lease grants).
    let approved = rules::within_auto_approve(a, auto)
        && move_request_tokens(conn, bot, parent, a, &id, now).await?;
    let (status, decided_by, decided_at) = if approved {
        ("approved", Some("auto"), Some(now))
    } else {
        ("pending", None, None)
    };
    sqlx::query(&format!(
        "INSERT INTO token_requests ({REQUEST_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&id)
    .bind(tenant)
    .bind(user)
    .bind(&bot.agent_id)
    .bind(parent)
    .bind(a)
    .bind(reason)
    .bind(status)
    .bind(decided_by)
    .bind(decided_at)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if !approved {
        insert_entry(
            conn,
            Entry {
                tenant,
                user,
                agent: Some(&bot.agent_id),
                kind: "request_pending",
                amount: a,
                request_id: Some(&id),
                counterparty: Some(parent),
                note: Some(reason),
                period: &bot.period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
    }
    let detail = json!({ "request_id": id, "agent_id": bot.agent_id, "parent_agent_id": parent,
                         "amount": amount, "reason": reason, "status": status });
    audit::record_in(
        conn,
        Some(tenant),
        by.user,
        "token_request_created",
        detail.clone(),
        by.request_id,
    )
    .await
    .map_err(|_| BudgetError::Internal("writing the audit row failed"))?;
    if approved {
        audit::record_in(
            conn,
            Some(tenant),
            by.user,
            "token_request_approved",
            json!({ "request_id": id, "agent_id": bot.agent_id, "parent_agent_id": parent,
                    "amount": amount, "decided_by": "auto" }),
            by.request_id,
        )
        .await
        .map_err(|_| BudgetError::Internal("writing the audit row failed"))?;
    }
    Ok(TokenRequest {
        id,
        agent_id: bot.agent_id.clone(),
        parent_agent_id: parent.to_owned(),
        amount,
        reason: reason.to_owned(),
        status: status.to_owned(),
        decided_by: decided_by.map(str::to_owned),
        decided_at_ms: decided_at,
        created_at_ms: now,
    })
}

/// Move `amount` from `parent` to `bot` for request `id`, if the parent can
/// cover it (false: it cannot, nothing changed). The caller holds the
/// user's lock.
pub(super) async fn move_request_tokens(
    conn: &mut AnyConnection,
    bot: &AccountRow,
    parent: &str,
    amount: i64,
    id: &str,
    now: i64,
) -> Result<bool, BudgetError> {
    let debited: Option<String> = sqlx::query_scalar(
        "UPDATE budget_accounts SET allocated = allocated - $2, updated_at_ms = $3 \
         WHERE agent_id = $1 AND allocated - spent - leased >= $2 RETURNING period",
    )
    .bind(parent)
    .bind(amount)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(period) = debited else {
        return Ok(false);
    };
    let credited = sqlx::query(
        "UPDATE budget_accounts SET allocated = allocated + $2, updated_at_ms = $3 \
         WHERE agent_id = $1",
    )
    .bind(&bot.agent_id)
    .bind(amount)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if credited == 0 {
        return Err(BudgetError::NotFound("agent"));
    }
    let (tenant, user) = (&bot.tenant_id, &bot.user_id);
    insert_entry(
        conn,
        Entry {
            tenant,
            user,
            agent: Some(parent),
            kind: "request_out",
            amount,
            d_allocated: -amount,
            request_id: Some(id),
            counterparty: Some(&bot.agent_id),
            period: &period,
            at: now,
            ..Entry::default()
        },
    )
    .await?;
    insert_entry(
        conn,
        Entry {
            tenant,
            user,
            agent: Some(&bot.agent_id),
            kind: "request_in",
            amount,
            d_allocated: amount,
            request_id: Some(id),
            counterparty: Some(parent),
            period: &period,
            at: now,
            ..Entry::default()
        },
    )
    .await?;
    Ok(true)
}

/// Request `id` of `tenant` (`None`: any tenant), if it exists.
pub async fn get_request(
    db: &Db,
    tenant: Option<&str>,
    id: &str,
) -> Result<Option<TokenRequest>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {REQUEST_COLUMNS} FROM token_requests WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let owner: String = row.try_get("tenant_id")?;
    if tenant.is_some_and(|t| t != owner) {
        return Ok(None);
    }
    request_from_row(&row).map(Some)
}

/// Approve (the tokens move from the main agent to the bot; refused with
/// [`BudgetError::Exhausted`] if it can no longer cover them, the request
/// staying pending) or deny a pending request of `tenant`. Audited.
pub async fn decide_request(
    db: &Db,
    tenant: &str,
    id: &str,
    approve: bool,
    decided_by: &str,
    request_id: Option<&str>,
    now: i64,
) -> Result<TokenRequest, BudgetError> {
    let req = get_request(db, Some(tenant), id)
        .await?
        .ok_or(BudgetError::NotFound("token request"))?;
    if req.status != "pending" {
        return Err(BudgetError::NotPending(req.status));
    }
    let bot = load_account(db, &req.agent_id)
        .await?
        .ok_or(BudgetError::NotPending("expired".into()))?;
    let mut w = Write::begin(db).await?;
    let result = decide_in(w.conn(), &bot, &req, approve, decided_by, request_id, now).await;
    w.finish(result).await
}

pub(super) async fn decide_in(
    conn: &mut AnyConnection,
    bot: &AccountRow,
    req: &TokenRequest,
    approve: bool,
    decided_by: &str,
    request_id: Option<&str>,
    now: i64,
) -> Result<TokenRequest, BudgetError> {
    let (tenant, user) = (&bot.tenant_id, &bot.user_id);
    lock_user(conn, tenant, user, now).await?;
    let status = if approve { "approved" } else { "denied" };
    let claimed = sqlx::query(&format!(
        "UPDATE token_requests SET status = $3, decided_by = $4, decided_at_ms = $5 \
         WHERE id = $1 AND tenant_id = $2 AND status = 'pending' RETURNING {REQUEST_COLUMNS}"
    ))
    .bind(&req.id)
    .bind(tenant)
    .bind(status)
    .bind(decided_by)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = claimed else {
        let now_status: Option<String> =
            sqlx::query_scalar("SELECT status FROM token_requests WHERE id = $1")
                .bind(&req.id)
                .fetch_optional(&mut *conn)
                .await?;
        return Err(BudgetError::NotPending(
            now_status.unwrap_or_else(|| "gone".into()),
        ));
    };
    let decided = request_from_row(&row)?;
    let amount = to_i64(decided.amount, "amount")?;
    if approve {
        if !move_request_tokens(
            conn,
            bot,
            &decided.parent_agent_id,
            amount,
            &decided.id,
            now,
        )
        .await?
        {
            let available = available_of(conn, &decided.parent_agent_id).await?;
            return Err(BudgetError::Exhausted {
                needed: decided.amount,
                available,
            });
        }
    } else {
        insert_entry(
            conn,
            Entry {
                tenant,
                user,
                agent: Some(&bot.agent_id),
                kind: "request_denied",
                amount,
                request_id: Some(&decided.id),
                counterparty: Some(decided_by),
                period: &bot.period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
    }
    audit::record_in(
        conn,
        Some(tenant),
        Some(decided_by),
        if approve {
            "token_request_approved"
        } else {
            "token_request_denied"
        },
        json!({ "request_id": decided.id, "agent_id": decided.agent_id,
                "parent_agent_id": decided.parent_agent_id, "amount": decided.amount,
                "decided_by": decided_by }),
        request_id,
    )
    .await
    .map_err(|_| BudgetError::Internal("writing the audit row failed"))?;
    Ok(decided)
}

/// Expire pending requests made at least `ttl_ms` ago; returns how many.
/// Each expiry is audited.
pub async fn expire_requests(db: &Db, now_ms: i64, ttl_ms: i64) -> Result<u64, sqlx::Error> {
    let mut w = Write::begin(db).await?;
    let result = expire_requests_in(w.conn(), now_ms, ttl_ms).await;
    match w.finish(result).await {
        Ok(n) => Ok(n),
        Err(BudgetError::Db(e)) => Err(e),
        Err(e) => Err(sqlx::Error::Protocol(e.to_string())),
    }
}

pub(super) async fn expire_requests_in(
    conn: &mut AnyConnection,
    now: i64,
    ttl_ms: i64,
) -> Result<u64, BudgetError> {
    let rows = sqlx::query(&format!(
        "UPDATE token_requests SET status = 'expired', decided_by = 'expiry', decided_at_ms = $1 \
         WHERE status = 'pending' AND created_at_ms <= $2 RETURNING {REQUEST_COLUMNS}"
    ))
    .bind(now)
    .bind(now.saturating_sub(ttl_ms))
    .fetch_all(&mut *conn)
    .await?;
    expired_requests_audit(conn, &rows, "expiry", now).await?;
    Ok(rows.len() as u64)
}

/// Entries and audit rows for requests just expired.
pub(super) async fn expired_requests_audit(
    conn: &mut AnyConnection,
    rows: &[AnyRow],
    by: &str,
    now: i64,
) -> Result<(), BudgetError> {
    let period = utc_month(now);
    for row in rows {
        let tenant: String = row.try_get("tenant_id")?;
        let user: String = row.try_get("user_id")?;
        let r = request_from_row(row)?;
        insert_entry(
            conn,
            Entry {
                tenant: &tenant,
                user: &user,
                agent: Some(&r.agent_id),
                kind: "request_expired",
                amount: to_i64(r.amount, "amount")?,
                request_id: Some(&r.id),
                counterparty: Some(by),
                period: &period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
        audit::record_in(
            conn,
            Some(&tenant),
            None,
            "token_request_expired",
            json!({ "request_id": r.id, "agent_id": r.agent_id,
                    "parent_agent_id": r.parent_agent_id, "amount": r.amount, "decided_by": by }),
            None,
        )
        .await
        .map_err(|_| BudgetError::Internal("writing the audit row failed"))?;
    }
    Ok(())
}
