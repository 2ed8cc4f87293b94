//! Accounts: opening (a new agent's budget carved from its parent), allocating and closing.

use delta_budget_rules as rules;
use delta_http::ApiError;
use sqlx::AnyConnection;
use sqlx::Row as _;

use crate::agents::{Agent, Kind};
use crate::config::ControlConfig;
use crate::db::{now_ms, utc_month};
use crate::state::AppState;

use super::model::*;
use super::store::*;

// ---- accounts: opening, allocating, closing --------------------------------

/// Who an agent's account belongs to, and its parent.
pub(super) struct AgentFacts {
    pub(super) tenant: String,
    pub(super) kind: &'static str,
    pub(super) parent: Option<String>,
    pub(super) owner: Option<String>,
}

pub(super) async fn agent_facts(
    conn: &mut AnyConnection,
    agent_id: &str,
) -> Result<Option<AgentFacts>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT tenant_id, kind, parent_agent_id, owner_user_id FROM agents WHERE id = $1",
    )
    .bind(agent_id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let kind: String = row.try_get("kind")?;
    Ok(Some(AgentFacts {
        tenant: row.try_get("tenant_id")?,
        kind: if kind == "bot" { "bot" } else { "main" },
        parent: row.try_get("parent_agent_id")?,
        owner: row.try_get("owner_user_id")?,
    }))
}

/// An account to open.
pub(super) struct NewAccount<'a> {
    pub(super) agent_id: &'a str,
    pub(super) tenant: &'a str,
    pub(super) user: &'a str,
    pub(super) kind: &'a str,
    pub(super) parent: Option<&'a str>,
    pub(super) period: &'a str,
}

/// Insert an empty account (the caller holds the user's lock).
pub(super) async fn insert_account(
    conn: &mut AnyConnection,
    new: NewAccount<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let NewAccount {
        agent_id,
        tenant,
        user,
        kind,
        parent,
        period,
    } = new;
    sqlx::query(
        "INSERT INTO budget_accounts (agent_id, tenant_id, user_id, kind, parent_agent_id, \
         grant_amount, allocated, spent, leased, auto_approve_limit, max_request, period, \
         last_op_amount, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0, 0, 0, $6, 0, $7, $7)",
    )
    .bind(agent_id)
    .bind(tenant)
    .bind(user)
    .bind(kind)
    .bind(parent)
    .bind(period)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    insert_entry(
        conn,
        Entry {
            tenant,
            user,
            agent: Some(agent_id),
            kind: "open",
            counterparty: parent,
            period,
            at: now,
            ..Entry::default()
        },
    )
    .await
}

/// The user whose budget `agent_id` draws on: its account's, or for an
/// agent without one (created before budgets existed), its owner's (a main
/// agent) or its parent's (a bot).
pub(super) async fn budget_user_of(
    conn: &mut AnyConnection,
    agent_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    if let Some(a) = account_in(conn, agent_id).await? {
        return Ok(Some(a.user_id));
    }
    let Some(facts) = agent_facts(conn, agent_id).await? else {
        return Ok(None);
    };
    match (facts.kind, facts.parent) {
        ("bot", Some(parent)) => Box::pin(budget_user_of(conn, &parent)).await,
        _ => Ok(facts.owner),
    }
}

/// `agent_id`'s account, opened empty if the agent has none (an agent
/// created before budgets existed); a bot's parent is opened first. The
/// caller holds the lock of the user [`budget_user_of`] names.
pub(super) async fn ensure_account_in(
    conn: &mut AnyConnection,
    agent_id: &str,
    user: &str,
    now: i64,
) -> Result<AccountRow, BudgetError> {
    if let Some(a) = account_in(conn, agent_id).await? {
        return Ok(a);
    }
    let facts = agent_facts(conn, agent_id)
        .await?
        .ok_or(BudgetError::NotFound("agent"))?;
    if let ("bot", Some(parent)) = (facts.kind, &facts.parent) {
        Box::pin(ensure_account_in(conn, parent, user, now)).await?;
    }
    insert_account(
        conn,
        NewAccount {
            agent_id,
            tenant: &facts.tenant,
            user,
            kind: facts.kind,
            parent: facts.parent.as_deref(),
            period: &utc_month(now),
        },
        now,
    )
    .await?;
    account_in(conn, agent_id)
        .await?
        .ok_or(BudgetError::NotFound("budget account"))
}

/// Set `acct`'s allocation to `target`, moving the difference from or to
/// its parent (the user's pool for a main agent, the main agent for a bot).
/// The allocation also becomes the account's per-period grant (a main
/// agent's grant counts its bots' allocations too, so it moves by the
/// difference). The caller holds the user's lock, so `acct.allocated` is
/// current (only changes under that lock move it); spent and leased may
/// move concurrently, which the conditional UPDATEs account for.
pub(super) async fn set_allocation_in(
    conn: &mut AnyConnection,
    acct: &AccountRow,
    target: i64,
    now: i64,
) -> Result<(), BudgetError> {
    let delta = target - acct.allocated;
    if delta == 0 {
        return Ok(());
    }
    let needed = to_u64(delta);
    let (tenant, user, agent) = (&acct.tenant_id, &acct.user_id, &acct.agent_id);
    let is_bot = acct.kind == "bot";
    let parent = acct.parent.as_deref().filter(|_| is_bot);
    if is_bot && parent.is_none() {
        return Err(BudgetError::Internal("a bot account without a parent"));
    }
    // Take from the parent first when growing: refuse before changing
    // anything.
    if delta > 0 {
        let covered = match parent {
            Some(p) => sqlx::query(
                "UPDATE budget_accounts SET allocated = allocated - $2, updated_at_ms = $3 \
                 WHERE agent_id = $1 AND allocated - spent - leased >= $2",
            )
            .bind(p)
            .bind(delta)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            None => sqlx::query(
                "UPDATE budget_users SET carved = carved + $3, updated_at_ms = $4 \
                 WHERE tenant_id = $1 AND user_id = $2 AND monthly_allocation - carved >= $3",
            )
            .bind(tenant)
            .bind(user)
            .bind(delta)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
        };
        if covered == 0 {
            let available = match parent {
                Some(p) => available_of(conn, p).await?,
                None => pool_of(conn, tenant, user).await?,
            };
            return Err(BudgetError::Exhausted { needed, available });
        }
    }
    // A bot's grant becomes its allocation; a main agent's moves by delta.
    let changed = sqlx::query(
        "UPDATE budget_accounts SET allocated = allocated + $2, \
         grant_amount = CASE WHEN kind = 'bot' THEN $3 ELSE grant_amount + $2 END, \
         updated_at_ms = $4 \
         WHERE agent_id = $1 AND allocated + $2 >= spent + leased RETURNING period",
    )
    .bind(agent)
    .bind(delta)
    .bind(target)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = changed else {
        let used: Option<i64> =
            sqlx::query_scalar("SELECT spent + leased FROM budget_accounts WHERE agent_id = $1")
                .bind(agent)
                .fetch_optional(&mut *conn)
                .await?;
        return Err(BudgetError::BelowUsed {
            minimum: used.map_or(0, to_u64),
        });
    };
    let period: String = row.try_get("period")?;
    if delta < 0 {
        match parent {
            Some(p) => {
                sqlx::query(
                    "UPDATE budget_accounts SET allocated = allocated - $2, updated_at_ms = $3 \
                     WHERE agent_id = $1",
                )
                .bind(p)
                .bind(delta)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE budget_users SET carved = carved + $3, updated_at_ms = $4 \
                     WHERE tenant_id = $1 AND user_id = $2",
                )
                .bind(tenant)
                .bind(user)
                .bind(delta)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    let d_grant = if is_bot { target - acct.grant } else { delta };
    insert_entry(
        conn,
        Entry {
            tenant,
            user,
            agent: Some(agent),
            kind: "allocate",
            amount: delta.abs(),
            d_allocated: delta,
            d_grant,
            counterparty: parent.or(Some("pool")),
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
            agent: parent,
            kind: if parent.is_some() {
                "allocate_to_bot"
            } else {
                "carve"
            },
            amount: delta.abs(),
            d_allocated: if parent.is_some() { -delta } else { 0 },
            d_carved: if parent.is_some() { 0 } else { delta },
            counterparty: Some(agent),
            period: &period,
            at: now,
            ..Entry::default()
        },
    )
    .await?;
    Ok(())
}

pub(super) async fn pool_of(
    conn: &mut AnyConnection,
    tenant: &str,
    user: &str,
) -> Result<u64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT monthly_allocation - carved FROM budget_users WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant)
    .bind(user)
    .fetch_optional(conn)
    .await?;
    Ok(v.map_or(0, to_u64))
}

/// The tokens a new agent starts with (`CreateAgent::budget`), checked
/// before it is deployed so that a refusal costs no deployment. The
/// authoritative check is [`open_account`]'s, in the agent's transaction.
pub async fn check_creation(
    state: &AppState,
    tenant: &str,
    user: &str,
    kind: Kind,
    parent: Option<&str>,
    budget: u64,
) -> Result<(), ApiError> {
    let needed = to_i64(budget, "budget")?;
    if needed == 0 {
        return Ok(());
    }
    let mut conn = state
        .db
        .pool()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let available = match (kind, parent) {
        (Kind::Bot, Some(p)) => available_of(&mut conn, p)
            .await
            .map_err(ApiError::internal)?,
        _ => {
            let known: Option<i64> = sqlx::query_scalar(
                "SELECT monthly_allocation - carved FROM budget_users \
                 WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await
            .map_err(ApiError::internal)?;
            match known {
                Some(pool) => to_u64(pool),
                None => to_u64(fresh_share(&mut conn, &state.config, user).await?.1),
            }
        }
    };
    let available = rules::stored(available).unwrap_or(i64::MAX);
    rules::carve(available, needed).map_err(|s| BudgetError::Exhausted {
        needed: s.needed,
        available: s.available,
    })?;
    Ok(())
}

/// Open a new agent's account with `budget` tokens carved from its parent,
/// inside the transaction that stores the agent (which has already written,
/// so the transaction holds SQLite's write lock). 409 `budget_exhausted`
/// when the parent cannot cover it. `owner` is the creating user: a main
/// agent draws on its owner's budget, a bot on its main agent's user's.
pub async fn open_account(
    conn: &mut AnyConnection,
    config: &ControlConfig,
    agent: &Agent,
    owner: &str,
    budget: u64,
) -> Result<(), ApiError> {
    let now = now_ms();
    let target = to_i64(budget, "budget")?;
    let (kind, user) = match (agent.kind, &agent.parent_agent_id) {
        (Kind::Bot, Some(parent)) => {
            // A main agent from before budgets with no recorded owner:
            // its account opens under the bot's creator.
            let user = budget_user_of(conn, parent)
                .await
                .map_err(ApiError::internal)?
                .unwrap_or_else(|| owner.to_owned());
            ("bot", user)
        }
        _ => ("main", owner.to_owned()),
    };
    let tenant = &agent.tenant_id;
    ensure_user_in(conn, config, tenant, &user, now).await?;
    let u = lock_user(conn, tenant, &user, now)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("budget user vanished"))?;
    if let Some(parent) = agent.parent_agent_id.as_deref().filter(|_| kind == "bot") {
        ensure_account_in(conn, parent, &user, now).await?;
    }
    insert_account(
        conn,
        NewAccount {
            agent_id: &agent.id,
            tenant,
            user: &user,
            kind,
            parent: agent.parent_agent_id.as_deref().filter(|_| kind == "bot"),
            period: &u.period,
        },
        now,
    )
    .await
    .map_err(ApiError::internal)?;
    let acct = account_in(conn, &agent.id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("budget account vanished"))?;
    set_allocation_in(conn, &acct, target, now).await?;
    Ok(())
}

/// Close a deleted agent's account inside the transaction that deletes it
/// (after the agent's row went): its unspent tokens (leased ones included:
/// its active leases are cancelled, a late return charges nothing) go back
/// to its parent, what it spent stays spent until the period ends, and its
/// pending token requests expire.
pub async fn close_account(
    conn: &mut AnyConnection,
    tenant: &str,
    agent_id: &str,
) -> Result<(), ApiError> {
    close_account_in(conn, tenant, agent_id, now_ms())
        .await
        .map_err(ApiError::from)
}

pub(super) async fn close_account_in(
    conn: &mut AnyConnection,
    tenant: &str,
    agent_id: &str,
    now: i64,
) -> Result<(), BudgetError> {
    let Some(user) = sqlx::query_scalar::<_, String>(
        "SELECT user_id FROM budget_accounts WHERE agent_id = $1 AND tenant_id = $2",
    )
    .bind(agent_id)
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?
    else {
        // An agent from before budgets existed: nothing to close.
        return Ok(());
    };
    lock_user(conn, tenant, &user, now).await?;
    sqlx::query(
        "UPDATE budget_leases SET status = 'expired' WHERE agent_id = $1 AND status = 'active'",
    )
    .bind(agent_id)
    .execute(&mut *conn)
    .await?;
    let expired = sqlx::query(
        "UPDATE token_requests SET status = 'expired', decided_by = 'agent_deleted', \
         decided_at_ms = $2 WHERE bot_agent_id = $1 AND status = 'pending' \
         RETURNING id, amount",
    )
    .bind(agent_id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let Some(row) = sqlx::query(&format!(
        "DELETE FROM budget_accounts WHERE agent_id = $1 RETURNING {ACCOUNT_COLUMNS}"
    ))
    .bind(agent_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    // On PostgreSQL a lease granted between the first UPDATE and this
    // DELETE (the grant is one statement that holds the account's row until
    // it commits; the DELETE waited for it and counted its tokens as
    // unspent) would stay active for an account that no longer exists:
    // expire it too, now that no grant can follow.
    sqlx::query(
        "UPDATE budget_leases SET status = 'expired' WHERE agent_id = $1 AND status = 'active'",
    )
    .bind(agent_id)
    .execute(&mut *conn)
    .await?;
    let a = account_from_row(&row)?;
    for r in &expired {
        let id: String = r.try_get("id")?;
        insert_entry(
            conn,
            Entry {
                tenant,
                user: &user,
                agent: Some(agent_id),
                kind: "request_expired",
                amount: r.try_get("amount")?,
                request_id: Some(&id),
                counterparty: Some("agent_deleted"),
                period: &a.period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
    }
    let unspent = a.allocated - a.spent;
    insert_entry(
        conn,
        Entry {
            tenant,
            user: &user,
            agent: Some(agent_id),
            kind: "close",
            amount: unspent,
            d_allocated: -a.allocated,
            d_spent: -a.spent,
            d_leased: -a.leased,
            d_grant: -a.grant,
            counterparty: a.parent.as_deref().or(Some("pool")),
            period: &a.period,
            at: now,
            ..Entry::default()
        },
    )
    .await?;
    let parent = a.parent.as_deref().filter(|_| a.kind == "bot");
    if let Some(p) = parent {
        sqlx::query(
            "UPDATE budget_accounts SET allocated = allocated + $2, updated_at_ms = $3 \
             WHERE agent_id = $1",
        )
        .bind(p)
        .bind(unspent)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        insert_entry(
            conn,
            Entry {
                tenant,
                user: &user,
                agent: Some(p),
                kind: "returned_by_bot",
                amount: unspent,
                d_allocated: unspent,
                counterparty: Some(agent_id),
                period: &a.period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
    }
    let d_carved = if parent.is_some() { 0 } else { -unspent };
    sqlx::query(
        "UPDATE budget_users SET carved = carved + $3, retired = retired + $4, \
         updated_at_ms = $5 WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant)
    .bind(&user)
    .bind(d_carved)
    .bind(a.spent)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    insert_entry(
        conn,
        Entry {
            tenant,
            user: &user,
            kind: "retire",
            amount: a.spent,
            d_carved,
            d_retired: a.spent,
            counterparty: Some(agent_id),
            period: &a.period,
            at: now,
            ..Entry::default()
        },
    )
    .await
    .map_err(BudgetError::from)
}
