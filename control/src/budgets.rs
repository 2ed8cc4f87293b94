//! Token budgets: the control plane is the **budget authority** (seed 000,
//! issue 7).
//!
//! # Model (the ledger crate's, `ledger/src/lib.rs`, in the control plane's tables)
//! - A **user** (per tenant) has a tier from `config.tiers` with a monthly
//!   allocation for a period (`YYYY-MM`, UTC). The account is created the
//!   first time it is needed, on the user's tier (their oldest account's,
//!   else the default) with what of it their accounts in other tenants do
//!   not hold: a user's tier is one allocation, and creating tenants does
//!   not mint more. Only platform operators change tiers.
//! - A **main agent**'s allocation is carved from its user's allocation; what
//!   no agent holds is the user's **pool**. A **bot**'s allocation is carved
//!   from its main agent's. `available = allocated - spent - leased`.
//! - Nodes do not own balances: they take **leases** (a slice of an agent's
//!   available tokens with an expiry), spend against them locally and return
//!   them with what they spent. The unspent part goes back to the agent; an
//!   overspend is charged as far as the budget allows and the rest reported
//!   `uncovered`; an expired lease's tokens go back by themselves
//!   ([`expire_leases`]) and a late return charges what the budget has then.
//! - A bot may **request** tokens from its main agent: refused above the main
//!   agent's `max_request` (or 0), approved at once up to its
//!   `auto_approve_limit` when it can cover them, otherwise pending until an
//!   admin or the main agent's owner decides, or it expires.
//! - **Roll-over** ([`roll_over_due`]), when the UTC month changes: spent goes
//!   to 0; a bot's allocation goes back to its grant, a main agent's to its
//!   grant minus its bots' (tokens moved by requests return); tokens out on
//!   leases stay counted (a bot whose leases hold more than its grant keeps
//!   them, its main agent gets that much less); pending requests expire; the
//!   tokens agents deleted during the period had spent come back to the pool.
//!
//! # Invariants
//! Per user, `pool + Σ allocated + retired == monthly_allocation`, where
//! `retired` is what deleted agents spent this period; no `available` and no
//! pool is ever negative. Every change is a row of `budget_entries` (made
//! append-only by triggers) carrying its signed deltas, so an account's rows
//! sum to its balance and a user's to its allocation, `carved` and `retired`.
//!
//! # Concurrency
//! Every check-and-change is a single conditional `UPDATE ... WHERE
//! available >= $n RETURNING`: on PostgreSQL the row lock makes concurrent
//! ones queue and re-check, on SQLite the single writer serializes them.
//! Lease grants and returns, the hot path, are one statement each on
//! PostgreSQL (data-modifying CTEs); on SQLite a writer task groups
//! concurrent ones into one transaction that reads the rows under SQLite's
//! write lock, checks and computes in Rust and writes them back with a few
//! multi-row statements (see [`group`]). A
//! change that touches several rows takes the user's row first (a no-op
//! `UPDATE`), then leases, then accounts; single-row changes (lease grants)
//! never wait for a second lock, so no cycle can form. On SQLite every write
//! transaction starts with a write (a transaction that reads first cannot be
//! upgraded once another connection has committed), and this module's
//! writers take turns on an in-process lock per database instead of meeting
//! in SQLite's busy handler, which sleeps in milliseconds.
//!
//! The HTTP handlers are thin: the operations are plain functions on a
//! [`Db`] ([`grant_lease`], [`return_lease`], [`request_tokens`], ...) that
//! benchmarks and the sweep call directly.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use delta_http::{ApiError, JsonBody, RequestId, record_ids};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Transaction};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::{Agent, Kind};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::config::ControlConfig;
use crate::db::{Backend, Db, new_id, now_ms, utc_month};
use crate::nodes::NodeAuth;
use crate::pagination::{Page, PageQuery};

/// Longest token request reason, bytes.
const MAX_REASON: usize = 1_000;
/// Longest node id, bytes (as in heartbeats).
const MAX_NODE_ID: usize = 128;
/// Expired leases handled per [`expire_leases`] call.
const EXPIRY_BATCH: i64 = 1_000;

// ---- errors ----------------------------------------------------------------

/// Why a budget operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// No such agent, lease, request or member (in this tenant).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The budget (an agent's available tokens, or the user's pool) cannot
    /// cover the amount.
    #[error("the budget cannot cover {needed} tokens ({available} available)")]
    Exhausted {
        /// Tokens asked for (at least).
        needed: u64,
        /// Tokens available.
        available: u64,
    },
    /// An allocation may not go below what is already spent or leased.
    #[error("the allocation cannot go below {minimum} tokens (spent + leased)")]
    BelowUsed {
        /// spent + leased.
        minimum: u64,
    },
    /// A tier's allocation may not go below what the user's agents hold.
    #[error("the tier's allocation ({allocation}) is below what is allocated ({allocated})")]
    BelowAllocated {
        /// The new tier's monthly allocation.
        allocation: u64,
        /// What the user's agents hold (and deleted agents spent).
        allocated: u64,
    },
    /// A main agent asked for tokens: it has no parent to ask.
    #[error("a main agent has no parent to request tokens from")]
    NoParent,
    /// A token request of 0 or more than the parent's `max_request`.
    #[error("a request must be for 1 to {limit} tokens")]
    InvalidAmount {
        /// The parent's `max_request`.
        limit: u64,
    },
    /// The request was already decided.
    #[error("the request is {0}, not pending")]
    NotPending(String),
    /// A malformed value.
    #[error("{0}")]
    Invalid(String),
    /// The configuration cannot serve this (e.g. default_tier not a tier).
    #[error("configuration: {0}")]
    Config(String),
    /// Something that should not happen did (logged; 500 to the client).
    #[error("{0}")]
    Internal(&'static str),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<BudgetError> for ApiError {
    fn from(e: BudgetError) -> Self {
        let message = e.to_string();
        match e {
            BudgetError::NotFound(what) => ApiError::not_found(what),
            BudgetError::Exhausted { needed, available } => {
                ApiError::conflict("budget_exhausted", message)
                    .details(json!({ "available": available, "needed": needed }))
            }
            BudgetError::BelowUsed { minimum } => ApiError::conflict("budget_exhausted", message)
                .details(json!({ "minimum": minimum })),
            BudgetError::BelowAllocated { allocated, .. } => {
                ApiError::conflict("below_allocated", message)
                    .details(json!({ "allocated": allocated }))
            }
            BudgetError::NoParent => ApiError::conflict("no_parent", message),
            BudgetError::InvalidAmount { limit } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", message)
                    .details(json!({ "limit": limit }))
            }
            BudgetError::NotPending(status) => {
                ApiError::conflict("not_pending", message).details(json!({ "status": status }))
            }
            BudgetError::Invalid(m) => ApiError::invalid(m),
            BudgetError::Config(m) => ApiError::internal(m),
            BudgetError::Internal(m) => ApiError::internal(m),
            BudgetError::Db(e) => ApiError::internal(e),
        }
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64, BudgetError> {
    i64::try_from(v).map_err(|_| BudgetError::Invalid(format!("{what} is too large")))
}

/// Stored amounts are never negative (CHECK constraints); clamp for show.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

// ---- write transactions ----------------------------------------------------

/// One in-process lock per SQLite database: this module's writers take turns
/// here rather than in SQLite's busy handler.
static SQLITE_TURNS: LazyLock<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// A database's identity within this process.
fn db_key(db: &Db) -> String {
    db.pool().connect_options().database_url.to_string()
}

fn sqlite_turn(db: &Db) -> Arc<tokio::sync::Mutex<()>> {
    let key = db_key(db);
    let mut turns = SQLITE_TURNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(turns.entry(key).or_default())
}

/// A write transaction (and, on SQLite, this module's turn to write).
/// Fields drop in order: the transaction before the turn.
struct Write {
    tx: Transaction<'static, Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Write {
    async fn begin(db: &Db) -> Result<Self, sqlx::Error> {
        let turn = match db.backend() {
            Backend::Sqlite => Some(sqlite_turn(db).lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = db.pool().begin().await?;
        Ok(Self { tx, _turn: turn })
    }

    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        let Self { tx, _turn } = self;
        tx.commit().await
    }

    /// Roll back (before giving up the turn), logging a failure: the
    /// transaction's error is what the caller reports.
    async fn abandon(self) {
        let Self { tx, _turn } = self;
        if let Err(r) = tx.rollback().await {
            tracing::warn!(error = %r, "rolling back a budget transaction");
        }
    }

    /// Commit on success; roll back (before giving up the turn) on error.
    async fn finish<T>(self, result: Result<T, BudgetError>) -> Result<T, BudgetError> {
        match result {
            Ok(v) => {
                self.commit().await?;
                Ok(v)
            }
            Err(e) => {
                self.abandon().await;
                Err(e)
            }
        }
    }
}

// ---- entries ---------------------------------------------------------------

/// One row of `budget_entries`; unset deltas are 0.
#[derive(Debug, Default)]
struct Entry<'a> {
    tenant: &'a str,
    user: &'a str,
    agent: Option<&'a str>,
    kind: &'a str,
    amount: i64,
    d_allocated: i64,
    d_spent: i64,
    d_leased: i64,
    d_grant: i64,
    d_monthly: i64,
    d_carved: i64,
    d_retired: i64,
    uncovered: i64,
    lease_id: Option<&'a str>,
    request_id: Option<&'a str>,
    counterparty: Option<&'a str>,
    note: Option<&'a str>,
    period: &'a str,
    at: i64,
}

async fn insert_entry(conn: &mut AnyConnection, e: Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO budget_entries (id, tenant_id, user_id, agent_id, kind, amount, \
         d_allocated, d_spent, d_leased, d_grant, d_monthly, d_carved, d_retired, uncovered, \
         lease_id, request_id, counterparty, note, period, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20)",
    )
    .bind(new_id("ben"))
    .bind(e.tenant)
    .bind(e.user)
    .bind(e.agent)
    .bind(e.kind)
    .bind(e.amount)
    .bind(e.d_allocated)
    .bind(e.d_spent)
    .bind(e.d_leased)
    .bind(e.d_grant)
    .bind(e.d_monthly)
    .bind(e.d_carved)
    .bind(e.d_retired)
    .bind(e.uncovered)
    .bind(e.lease_id)
    .bind(e.request_id)
    .bind(e.counterparty)
    .bind(e.note)
    .bind(e.period)
    .bind(e.at)
    .execute(conn)
    .await?;
    Ok(())
}

// ---- rows ------------------------------------------------------------------

/// A user's budget row.
#[derive(Debug, Clone)]
struct UserRow {
    tier: String,
    monthly_allocation: i64,
    carved: i64,
    retired: i64,
    period: String,
}

const USER_COLUMNS: &str = "tier, monthly_allocation, carved, retired, period";

fn user_from_row(row: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        tier: row.try_get("tier")?,
        monthly_allocation: row.try_get("monthly_allocation")?,
        carved: row.try_get("carved")?,
        retired: row.try_get("retired")?,
        period: row.try_get("period")?,
    })
}

/// An agent's budget account.
#[derive(Debug, Clone)]
struct AccountRow {
    agent_id: String,
    tenant_id: String,
    user_id: String,
    kind: String,
    parent: Option<String>,
    grant: i64,
    allocated: i64,
    spent: i64,
    leased: i64,
    auto_approve_limit: i64,
    max_request: i64,
    period: String,
}

impl AccountRow {
    fn available(&self) -> i64 {
        self.allocated - self.spent - self.leased
    }

    fn view(&self) -> AgentBudget {
        AgentBudget {
            agent_id: self.agent_id.clone(),
            kind: self.kind.clone(),
            parent_agent_id: self.parent.clone(),
            user_id: self.user_id.clone(),
            grant: to_u64(self.grant),
            allocated: to_u64(self.allocated),
            spent: to_u64(self.spent),
            leased: to_u64(self.leased),
            available: to_u64(self.available()),
            auto_approve_limit: to_u64(self.auto_approve_limit),
            max_request: to_u64(self.max_request),
            period: self.period.clone(),
        }
    }
}

const ACCOUNT_COLUMNS: &str = "agent_id, tenant_id, user_id, kind, parent_agent_id, grant_amount, \
     allocated, spent, leased, auto_approve_limit, max_request, period";

fn account_from_row(row: &AnyRow) -> Result<AccountRow, sqlx::Error> {
    Ok(AccountRow {
        agent_id: row.try_get("agent_id")?,
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        kind: row.try_get("kind")?,
        parent: row.try_get("parent_agent_id")?,
        grant: row.try_get("grant_amount")?,
        allocated: row.try_get("allocated")?,
        spent: row.try_get("spent")?,
        leased: row.try_get("leased")?,
        auto_approve_limit: row.try_get("auto_approve_limit")?,
        max_request: row.try_get("max_request")?,
        period: row.try_get("period")?,
    })
}

async fn account_in(
    conn: &mut AnyConnection,
    agent_id: &str,
) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM budget_accounts WHERE agent_id = $1"
    ))
    .bind(agent_id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(account_from_row)
    .transpose()
}

async fn load_account(db: &Db, agent_id: &str) -> Result<Option<AccountRow>, sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    account_in(&mut conn, agent_id).await
}

async fn available_of(conn: &mut AnyConnection, agent_id: &str) -> Result<u64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT allocated - spent - leased FROM budget_accounts WHERE agent_id = $1",
    )
    .bind(agent_id)
    .fetch_optional(conn)
    .await?;
    Ok(v.map_or(0, to_u64))
}

// ---- users -----------------------------------------------------------------

/// The monthly allocation of `tier`, if it is one.
fn tier_allocation(config: &ControlConfig, tier: &str) -> Option<u64> {
    config.tiers.get(tier).copied()
}

/// What a user's new account in another tenant starts with: their tier
/// (that of their oldest account, else the default) and what of its
/// allocation their accounts in other tenants do not already hold. A
/// user's tier is one monthly allocation however many tenants they are in:
/// a new tenant draws on it rather than bringing a fresh one.
async fn fresh_share(
    conn: &mut AnyConnection,
    config: &ControlConfig,
    user: &str,
) -> Result<(String, i64), BudgetError> {
    let tier: Option<String> = sqlx::query_scalar(
        "SELECT tier FROM budget_users WHERE user_id = $1 ORDER BY created_at_ms, tenant_id LIMIT 1",
    )
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    // A tier since removed from the configuration counts as the default.
    let tier = tier
        .filter(|t| config.tiers.contains_key(t))
        .unwrap_or_else(|| config.default_tier.clone());
    let allocation = tier_allocation(config, &tier)
        .ok_or_else(|| BudgetError::Config(format!("default_tier {tier:?} is not in [tiers]")))?;
    let allocation = to_i64(allocation, "the tier's allocation")?;
    // (SUM of a BIGINT is NUMERIC on PostgreSQL: cast back.)
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(monthly_allocation), 0) AS BIGINT) FROM budget_users \
         WHERE user_id = $1",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    Ok((tier, (allocation - held).max(0)))
}

/// Create `user`'s account in `tenant` unless it exists, with
/// [`fresh_share`] of their tier. A write, so it may start a transaction.
async fn ensure_user_in(
    conn: &mut AnyConnection,
    config: &ControlConfig,
    tenant: &str,
    user: &str,
    now: i64,
) -> Result<(), BudgetError> {
    // Writes first (SQLite: a transaction that reads first cannot always
    // be upgraded); on PostgreSQL the no-op update locks the user, so two
    // tenants' first uses cannot both draw the same share.
    sqlx::query("UPDATE users SET created_at_ms = created_at_ms WHERE id = $1")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM budget_users WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_some() {
        return Ok(());
    }
    let (tier, allocation) = fresh_share(conn, config, user).await?;
    let tier = tier.as_str();
    let period = utc_month(now);
    let inserted = sqlx::query(
        "INSERT INTO budget_users (tenant_id, user_id, tier, monthly_allocation, carved, retired, \
         period, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, 0, 0, $5, $6, $6) \
         ON CONFLICT (tenant_id, user_id) DO NOTHING",
    )
    .bind(tenant)
    .bind(user)
    .bind(tier)
    .bind(allocation)
    .bind(&period)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        insert_entry(
            conn,
            Entry {
                tenant,
                user,
                kind: "tier",
                amount: allocation,
                d_monthly: allocation,
                note: Some(tier),
                period: &period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
    }
    Ok(())
}

/// Lock `user`'s row (a no-op write: the row lock on PostgreSQL, the write
/// lock on SQLite) and read it. Every change touching several rows of a
/// user's budget starts here, so they queue on one row.
async fn lock_user(
    conn: &mut AnyConnection,
    tenant: &str,
    user: &str,
    now: i64,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE budget_users SET updated_at_ms = $3 WHERE tenant_id = $1 AND user_id = $2 \
         RETURNING {USER_COLUMNS}"
    ))
    .bind(tenant)
    .bind(user)
    .bind(now)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(user_from_row)
    .transpose()
}

// ---- accounts: opening, allocating, closing --------------------------------

/// Who an agent's account belongs to, and its parent.
struct AgentFacts {
    tenant: String,
    kind: &'static str,
    parent: Option<String>,
    owner: Option<String>,
}

async fn agent_facts(
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
struct NewAccount<'a> {
    agent_id: &'a str,
    tenant: &'a str,
    user: &'a str,
    kind: &'a str,
    parent: Option<&'a str>,
    period: &'a str,
}

/// Insert an empty account (the caller holds the user's lock).
async fn insert_account(
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
async fn budget_user_of(
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
async fn ensure_account_in(
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
async fn set_allocation_in(
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

async fn pool_of(conn: &mut AnyConnection, tenant: &str, user: &str) -> Result<u64, sqlx::Error> {
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
    if budget > available {
        return Err(BudgetError::Exhausted {
            needed: budget,
            available,
        }
        .into());
    }
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

async fn close_account_in(
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

// ---- leases ----------------------------------------------------------------

/// A lease granted to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// `lse_...`.
    pub lease_id: String,
    /// The agent whose budget it holds.
    pub agent_id: String,
    /// Tokens reserved: min(amount, available).
    pub granted: u64,
    /// When its tokens go back to the budget if it is not returned.
    pub expires_at_ms: i64,
}

/// What returning a lease did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseReturn {
    /// The lease.
    pub lease_id: String,
    /// Tokens charged to the budget.
    pub charged: u64,
    /// Tokens of the lease that went back to the budget now (0 for an
    /// expired lease: its tokens went back when it expired).
    pub returned: u64,
    /// Tokens spent that the budget could not cover.
    pub uncovered: u64,
    /// `returned`, or `expired` when it was returned after expiring.
    pub status: String,
}

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
    if amount == 0 {
        return Err(BudgetError::Invalid("amount must be at least 1".into()));
    }
    let min = min_amount.max(1);
    if min > amount {
        return Err(BudgetError::Invalid(
            "min_amount must not exceed amount".into(),
        ));
    }
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

/// A grant on PostgreSQL: one statement (its own transaction) checks and
/// takes the tokens with a conditional `UPDATE` of the account's row, on
/// which concurrent grants queue and re-check, and inserts the lease and its
/// entry from what that `UPDATE` returned; a refusal writes nothing.
async fn grant_pg(
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

/// A return on PostgreSQL: one statement (its own transaction) claims the
/// lease (a conditional `UPDATE`, so a return is applied once), then updates
/// its account (the lease's row locked before the account's, as everywhere)
/// and inserts the entry. An unclaimed lease answers the stored result.
async fn return_pg(
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
         CASE WHEN status = 'returned' THEN granted ELSE 0 END AS held), \
         a AS (UPDATE budget_accounts SET \
         last_op_amount = LEAST(allocated - spent - leased + l.held, $2), \
         spent = spent + LEAST(allocated - spent - leased + l.held, $2), \
         leased = leased - l.held, updated_at_ms = $3 \
         FROM l WHERE budget_accounts.agent_id = l.agent_id \
         RETURNING budget_accounts.period, budget_accounts.last_op_amount), \
         r AS (SELECT l.tenant_id, l.user_id, l.agent_id, l.status, l.held, \
         COALESCE(a.last_op_amount, 0) AS charged, COALESCE(a.period, $4) AS period \
         FROM l LEFT JOIN a ON TRUE), \
         e AS (INSERT INTO budget_entries (id, tenant_id, user_id, agent_id, kind, amount, \
         d_allocated, d_spent, d_leased, d_grant, d_monthly, d_carved, d_retired, uncovered, \
         lease_id, request_id, counterparty, note, period, at_ms) \
         SELECT $5, tenant_id, user_id, agent_id, 'lease_return', held - LEAST($2, held), \
         0, charged, -held, 0, 0, 0, 0, $2 - charged, $1, NULL, NULL, $6, period, $3 FROM r) \
         SELECT status, held, charged FROM r",
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
    let held: i64 = row.try_get("held")?;
    let charged: i64 = row.try_get("charged")?;
    Ok(LeaseReturn {
        lease_id: lease_id.to_owned(),
        charged: to_u64(charged),
        returned: to_u64(held - spent.min(held)),
        uncovered: to_u64(spent - charged),
        status: row.try_get("status")?,
    })
}

/// The result of a lease's return, as recorded.
async fn stored_return(
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

// ---- lease operations: alone or in groups ----------------------------------

/// A lease grant or return, as queued.
#[derive(Debug)]
enum LeaseOp {
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
enum LeaseDone {
    Granted(Lease),
    Returned(LeaseReturn),
}

/// Run a lease operation. On PostgreSQL each is one statement, its own
/// transaction ([`grant_pg`], [`return_pg`]): they run side by side,
/// queuing only on the same account's row. On SQLite, where writers take
/// turns anyway, concurrent callers' operations are grouped into one
/// transaction by a writer task ([`group`]). Each caller is answered once its
/// operation committed.
async fn run_lease_op(db: &Db, op: LeaseOp) -> Result<LeaseDone, BudgetError> {
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
        (Backend::Sqlite, op) => group::submit(db, op).await,
    }
}

/// The SQLite lease writer: one task per database applies the operations
/// callers queue, in groups, on a connection of its own.
///
/// Each query through sqlx's SQLite driver is a round trip to the
/// connection's worker thread, and each commit writes every page the
/// transaction touched to the WAL, so a group costs two queries and one
/// commit whatever its size. Under this module's turn, the first query
/// begins an `IMMEDIATE` transaction (SQLite's write lock: no connection
/// changes anything until the commit, so what is read stays true) and reads
/// the group's leases and accounts; the operations are applied to them in
/// Rust, in order (each sees what the previous left, as if run one by one);
/// the second query writes every change with a few multi-row statements
/// (`UPDATE ... FROM (VALUES ...)`, multi-row `INSERT`s; anonymous `?`
/// parameters, see [`Db::values_list`]), checks that each wrote the rows it
/// meant to, and commits. A refused operation changes nothing; the `CHECK`
/// constraints still guard every row written. If the database fails, the
/// group is rolled back (its connection closed), and each operation applied
/// again alone, so one failing operation fails only itself.
mod group {
    use std::collections::HashMap;
    use std::fmt::Write as _;
    use std::sync::LazyLock;
    use std::time::Duration;

    use sqlx::{AnyConnection, Connection as _, Row as _};
    use tokio::sync::{mpsc, oneshot};

    use super::{BudgetError, Lease, LeaseDone, LeaseOp, LeaseReturn, to_u64};
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
        let key = super::db_key(db);
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
                    return answer.await.unwrap_or_else(|_| {
                        Err(BudgetError::Internal("the lease writer stopped"))
                    });
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
        let _turn = super::sqlite_turn(db).lock_owned().await;
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
            self.allocated - (self.spent + self.d_spent) - (self.leased + self.d_leased)
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
             NULL AS granted, NULL AS status, NULL AS returned_at_ms, NULL AS r_returned, \
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
                    let available = account.available();
                    if available < *min {
                        Err(BudgetError::Exhausted {
                            needed: to_u64(*min),
                            available: to_u64(available),
                        })
                    } else {
                        let granted = (*amount).min(available);
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
                            let (charged, period) = match accounts.get_mut(&lease.agent) {
                                Some(account) => {
                                    let charged = (account.available() + held).min(*spent);
                                    account.d_spent += charged;
                                    account.d_leased -= held;
                                    account.changed_at = Some(*now);
                                    (charged, account.period.clone())
                                }
                                None => (0, utc_month(*now)),
                            };
                            let returned = held - (*spent).min(held);
                            let answer = LeaseReturn {
                                lease_id: lease_id.clone(),
                                charged: to_u64(charged),
                                returned: to_u64(returned),
                                uncovered: to_u64(spent - charged),
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
                                uncovered: spent - charged,
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

async fn expire_in(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, BudgetError> {
    let Some(lease) = sqlx::query(
        "UPDATE budget_leases SET status = 'expired' \
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
    let period: Option<String> = sqlx::query_scalar(
        "UPDATE budget_accounts SET leased = leased - $2, updated_at_ms = $3 \
         WHERE agent_id = $1 RETURNING period",
    )
    .bind(&agent)
    .bind(granted)
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
                d_leased: -granted,
                lease_id: Some(id),
                period: &period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
    }
    Ok(true)
}

// ---- token requests --------------------------------------------------------

/// A bot's token request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `tkr_...`.
    pub id: String,
    /// The bot that asked.
    pub agent_id: String,
    /// Its main agent, which gives the tokens.
    pub parent_agent_id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// Why.
    pub reason: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    /// `auto`, the deciding user's id, `expiry`, `roll-over` or
    /// `agent_deleted`.
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at_ms: Option<i64>,
    /// When it was made.
    pub created_at_ms: i64,
}

const REQUEST_COLUMNS: &str = "id, tenant_id, user_id, bot_agent_id, parent_agent_id, amount, \
     reason, status, decided_by, decided_at_ms, created_at_ms";

fn request_from_row(row: &AnyRow) -> Result<TokenRequest, sqlx::Error> {
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

/// Who asks for tokens: an API caller (scoped to their tenant) or a node
/// on behalf of a guest.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The caller's tenant; `None` for a node (fleet-wide).
    pub tenant: Option<&'a str>,
    /// The acting user, for the audit log.
    pub user: Option<&'a str>,
    /// The HTTP request id, for the audit log.
    pub request_id: Option<&'a str>,
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
    if reason.len() > MAX_REASON || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(BudgetError::Invalid(format!(
            "reason must be at most {MAX_REASON} bytes without control characters"
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

async fn request_in(
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
    let a = i64::try_from(amount).unwrap_or(i64::MAX);
    if a == 0 || a > max {
        return Err(BudgetError::InvalidAmount { limit: to_u64(max) });
    }
    let id = new_id("tkr");
    let approved = a <= auto && move_request_tokens(conn, bot, parent, a, &id, now).await?;
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
async fn move_request_tokens(
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

async fn decide_in(
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

async fn expire_requests_in(
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
async fn expired_requests_audit(
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

async fn roll_over_in(
    conn: &mut AnyConnection,
    tenant: &str,
    user: &str,
    period: &str,
    now: i64,
) -> Result<bool, BudgetError> {
    let Some(u) = lock_user(conn, tenant, user, now).await? else {
        return Ok(false);
    };
    if u.period.as_str() >= period {
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
        let allocated = a.grant - to_bots.get(&a.agent_id).copied().unwrap_or(0);
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

async fn rollover_entry(
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

// ---- views -----------------------------------------------------------------

/// An agent's budget account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentBudget {
    /// The agent.
    pub agent_id: String,
    /// `main` or `bot`.
    pub kind: String,
    /// A bot's main agent.
    pub parent_agent_id: Option<String>,
    /// The user whose budget it draws on.
    pub user_id: String,
    /// What it gets back at each roll-over (a main agent's includes what
    /// its bots get).
    pub grant: u64,
    /// Tokens it holds this period.
    pub allocated: u64,
    /// Tokens charged this period.
    pub spent: u64,
    /// Tokens out on nodes' leases.
    pub leased: u64,
    /// allocated - spent - leased.
    pub available: u64,
    /// A main agent's bots' requests up to this are approved at once.
    pub auto_approve_limit: u64,
    /// A main agent's bots may ask for at most this much at a time.
    pub max_request: u64,
    /// `YYYY-MM` (UTC).
    pub period: String,
}

/// A user's budget.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserBudget {
    /// The user.
    pub user_id: String,
    /// Their tier (a key of the configuration's `[tiers]`).
    pub tier: String,
    /// The tier's monthly allocation.
    pub monthly_allocation: u64,
    /// What the user's agents hold, plus what deleted agents spent this
    /// period.
    pub allocated: u64,
    /// Unallocated: monthly_allocation - allocated.
    pub pool: u64,
    /// Spent this period by agents since deleted (back at the roll-over).
    pub retired: u64,
    /// `YYYY-MM` (UTC).
    pub period: String,
    /// The user's main agents' balances.
    pub main_agents: Vec<AgentBudget>,
}

/// What a node sees of an agent's budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeBudget {
    /// Tokens the agent holds this period.
    pub allocated: u64,
    /// Tokens charged.
    pub spent: u64,
    /// Tokens out on leases.
    pub reserved: u64,
    /// allocated - spent - reserved.
    pub available: u64,
    /// `YYYY-MM` (UTC).
    pub period: String,
}

/// `user`'s budget in `tenant`, if it has one.
pub async fn user_budget(
    db: &Db,
    tenant: &str,
    user: &str,
) -> Result<Option<UserBudget>, sqlx::Error> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM budget_users WHERE tenant_id = $1 AND user_id = $2"
    ))
    .bind(tenant)
    .bind(user)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let u = user_from_row(&row)?;
    let main_agents = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM budget_accounts \
         WHERE tenant_id = $1 AND user_id = $2 AND kind = 'main' ORDER BY created_at_ms, agent_id"
    ))
    .bind(tenant)
    .bind(user)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| account_from_row(r).map(|a| a.view()))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(UserBudget {
        user_id: user.to_owned(),
        tier: u.tier,
        monthly_allocation: to_u64(u.monthly_allocation),
        allocated: to_u64(u.carved),
        pool: to_u64(u.monthly_allocation - u.carved),
        retired: to_u64(u.retired),
        period: u.period,
        main_agents,
    }))
}

/// `agent_id`'s budget account, if it has one.
pub async fn agent_budget(db: &Db, agent_id: &str) -> Result<Option<AgentBudget>, sqlx::Error> {
    Ok(load_account(db, agent_id).await?.map(|a| a.view()))
}

/// `user`'s budget, created on the default tier if they have none yet.
async fn user_budget_ensured(
    state: &AppState,
    tenant: &str,
    user: &str,
) -> Result<UserBudget, ApiError> {
    if let Some(b) = user_budget(&state.db, tenant, user)
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(b);
    }
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = ensure_user_in(w.conn(), &state.config, tenant, user, now_ms()).await;
    w.finish(result).await?;
    user_budget(&state.db, tenant, user)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("budget user vanished"))
}

/// `agent`'s account, opened empty if it has none (an agent from before
/// budgets existed).
async fn agent_budget_ensured(state: &AppState, agent: &Agent) -> Result<AgentBudget, ApiError> {
    if let Some(b) = agent_budget(&state.db, &agent.id)
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(b);
    }
    let user = {
        let mut conn = state
            .db
            .pool()
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        budget_user_of(&mut conn, &agent.id)
            .await
            .map_err(ApiError::internal)?
            .ok_or(BudgetError::NotFound("budget account"))?
    };
    let now = now_ms();
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = async {
        ensure_user_in(w.conn(), &state.config, &agent.tenant_id, &user, now).await?;
        lock_user(w.conn(), &agent.tenant_id, &user, now).await?;
        ensure_account_in(w.conn(), &agent.id, &user, now).await
    }
    .await;
    Ok(w.finish(result).await?.view())
}

/// The user who owns `agent_id` in `tenant` (`owner_user_id`).
async fn owner_of(db: &Db, tenant: &str, agent_id: &str) -> Result<Option<String>, ApiError> {
    let owner: Option<Option<String>> =
        sqlx::query_scalar("SELECT owner_user_id FROM agents WHERE id = $1 AND tenant_id = $2")
            .bind(agent_id)
            .bind(tenant)
            .fetch_optional(db.pool())
            .await
            .map_err(ApiError::internal)?;
    Ok(owner.flatten())
}

/// Deciding a bot's requests (and asking on its behalf) needs an admin or
/// the owner of the bot's main agent.
async fn require_decider(
    state: &AppState,
    principal: &Principal,
    parent: Option<&str>,
) -> Result<(), ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:write")?;
    if principal.role >= Role::Admin {
        return Ok(());
    }
    if let Some(p) = parent
        && owner_of(&state.db, &principal.tenant_id, p)
            .await?
            .as_deref()
            == Some(principal.user_id.as_str())
    {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "this needs the admin role or owning the bot's main agent",
    ))
}

async fn require_member(state: &AppState, tenant: &str, user: &str) -> Result<(), ApiError> {
    let member: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    member
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("user"))
}

// ---- routes ----------------------------------------------------------------

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_budget))
        .routes(routes!(get_user_budget, set_user_tier))
        .routes(routes!(get_agent_budget, set_agent_budget))
        .routes(routes!(create_token_request))
        .routes(routes!(list_token_requests))
        .routes(routes!(get_token_request))
        .routes(routes!(approve_token_request))
        .routes(routes!(deny_token_request))
        .routes(routes!(node_grant_lease))
        .routes(routes!(node_return_lease))
        .routes(routes!(node_budget))
        .routes(routes!(node_create_token_request))
        .routes(routes!(node_get_token_request))
}

// ---- user API --------------------------------------------------------------

/// The caller's budget: tier, monthly allocation, pool and their main
/// agents' balances (created on the default tier on first use).
#[utoipa::path(
    get,
    path = "/v1/budget",
    tag = "budgets",
    responses((status = 200, description = "The caller's budget", body = UserBudget)),
    security(("bearer" = []))
)]
async fn my_budget(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<UserBudget>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    user_budget_ensured(&state, &principal.tenant_id, &principal.user_id)
        .await
        .map(Json)
}

/// A member's budget (admin).
#[utoipa::path(
    get,
    path = "/v1/budget/users/{user_id}",
    tag = "budgets",
    params(("user_id" = String, Path, description = "A member of the tenant")),
    responses(
        (status = 200, description = "Their budget", body = UserBudget),
        (status = 404, description = "Not a member of this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_user_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<Json<UserBudget>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("budgets:read")?;
    require_member(&state, &principal.tenant_id, &user_id).await?;
    user_budget_ensured(&state, &principal.tenant_id, &user_id)
        .await
        .map(Json)
}

/// Body of `PUT /v1/budget/users/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTier {
    /// A tier of the configuration's `[tiers]`.
    pub tier: String,
    /// The tenant whose account of the user changes (default: the
    /// operator's current tenant).
    pub tenant_id: Option<String>,
}

/// Change a user's tier in a tenant (platform operators only: a tenant
/// admin could otherwise grant themselves any allocation): the pool grows
/// or shrinks by the difference; refused (409 `below_allocated`) below
/// what is allocated.
#[utoipa::path(
    put,
    path = "/v1/budget/users/{user_id}",
    tag = "budgets",
    params(("user_id" = String, Path, description = "A member of the tenant")),
    request_body = SetTier,
    responses(
        (status = 200, description = "Changed", body = UserBudget),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "Not a member of that tenant"),
        (status = 409, description = "`below_allocated`"),
        (status = 422, description = "`invalid`: not a tier"),
    ),
    security(("bearer" = []))
)]
async fn set_user_tier(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<SetTier>,
) -> Result<Json<UserBudget>, ApiError> {
    principal.require_operator()?;
    principal.require_scope("budgets:write")?;
    let tenant = body.tenant_id.as_deref().unwrap_or(&principal.tenant_id);
    require_member(&state, tenant, &user_id).await?;
    let allocation = tier_allocation(&state.config, &body.tier).ok_or_else(|| {
        let known: Vec<&str> = state.config.tiers.keys().map(String::as_str).collect();
        ApiError::invalid(format!("unknown tier; the tiers are {}", known.join(", ")))
    })?;
    let allocation = to_i64(allocation, "the tier's allocation")?;
    let now = now_ms();
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = async {
        ensure_user_in(w.conn(), &state.config, tenant, &user_id, now).await?;
        let u = lock_user(w.conn(), tenant, &user_id, now)
            .await?
            .ok_or(BudgetError::NotFound("user"))?;
        if allocation < u.carved {
            return Err(BudgetError::BelowAllocated {
                allocation: to_u64(allocation),
                allocated: to_u64(u.carved),
            });
        }
        sqlx::query(
            "UPDATE budget_users SET tier = $3, monthly_allocation = $4, updated_at_ms = $5 \
             WHERE tenant_id = $1 AND user_id = $2 AND carved <= $4",
        )
        .bind(tenant)
        .bind(&user_id)
        .bind(&body.tier)
        .bind(allocation)
        .bind(now)
        .execute(w.conn())
        .await?;
        insert_entry(
            w.conn(),
            Entry {
                tenant,
                user: &user_id,
                kind: "tier",
                amount: allocation,
                d_monthly: allocation - u.monthly_allocation,
                note: Some(&body.tier),
                period: &u.period,
                at: now,
                ..Entry::default()
            },
        )
        .await?;
        audit::record_in(
            w.conn(),
            Some(tenant),
            Some(&principal.user_id),
            "budget_tier_changed",
            json!({ "user_id": user_id, "from": u.tier, "to": body.tier,
                    "monthly_allocation": allocation }),
            Some(&rid.0),
        )
        .await
        .map_err(|_| BudgetError::Internal("writing the audit row failed"))
    }
    .await;
    w.finish(result).await?;
    user_budget(&state.db, tenant, &user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("budget user vanished"))
        .map(Json)
}

/// An agent's budget account.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/budget",
    tag = "budgets",
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Its account", body = AgentBudget),
        (status = 404, description = "No such agent in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_agent_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AgentBudget>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    record_ids(None, Some(&id), None);
    let agent = crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    agent_budget_ensured(&state, &agent).await.map(Json)
}

/// Body of `PUT /v1/agents/{id}/budget`; what is absent is unchanged.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAgentBudget {
    /// The agent's allocation (and per-period grant): the difference moves
    /// from or to its parent (the user's pool, or the bot's main agent).
    pub allocated: Option<u64>,
    /// A main agent's: its bots' requests up to this are approved at once.
    pub auto_approve_limit: Option<u64>,
    /// A main agent's: its bots may ask for at most this much at a time.
    pub max_request: Option<u64>,
}

/// Change an agent's allocation or a main agent's request limits.
#[utoipa::path(
    put,
    path = "/v1/agents/{id}/budget",
    tag = "budgets",
    params(("id" = String, Path, description = "Agent id")),
    request_body = SetAgentBudget,
    responses(
        (status = 200, description = "Changed", body = AgentBudget),
        (status = 404, description = "No such agent in this tenant"),
        (status = 409, description = "`budget_exhausted`: the parent cannot cover the increase, \
                                      or the allocation would go below spent + leased"),
        (status = 422, description = "`invalid`: limits on a bot, or a value too large"),
    ),
    security(("bearer" = []))
)]
async fn set_agent_budget(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetAgentBudget>,
) -> Result<Json<AgentBudget>, ApiError> {
    principal.require_role(Role::Admin)?;
    principal.require_scope("budgets:write")?;
    record_ids(None, Some(&id), None);
    let agent = crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    let limits_given = body.auto_approve_limit.is_some() || body.max_request.is_some();
    if agent.kind == Kind::Bot && limits_given {
        return Err(ApiError::invalid(
            "auto_approve_limit and max_request belong to main agents: they bound their bots' requests",
        ));
    }
    let target = body.allocated.map(|v| to_i64(v, "allocated")).transpose()?;
    let auto = body
        .auto_approve_limit
        .map(|v| to_i64(v, "auto_approve_limit"))
        .transpose()?;
    let max = body
        .max_request
        .map(|v| to_i64(v, "max_request"))
        .transpose()?;
    let user = {
        let mut conn = state
            .db
            .pool()
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        budget_user_of(&mut conn, &agent.id)
            .await
            .map_err(ApiError::internal)?
            .ok_or(BudgetError::NotFound("budget account"))?
    };
    let tenant = &principal.tenant_id;
    let now = now_ms();
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = async {
        ensure_user_in(w.conn(), &state.config, tenant, &user, now).await?;
        lock_user(w.conn(), tenant, &user, now).await?;
        let acct = ensure_account_in(w.conn(), &agent.id, &user, now).await?;
        if let Some(t) = target {
            set_allocation_in(w.conn(), &acct, t, now).await?;
        }
        if limits_given {
            sqlx::query(
                "UPDATE budget_accounts SET auto_approve_limit = $2, max_request = $3, \
                 updated_at_ms = $4 WHERE agent_id = $1",
            )
            .bind(&agent.id)
            .bind(auto.unwrap_or(acct.auto_approve_limit))
            .bind(max.unwrap_or(acct.max_request))
            .bind(now)
            .execute(w.conn())
            .await?;
        }
        audit::record_in(
            w.conn(),
            Some(tenant),
            Some(&principal.user_id),
            "agent_budget_changed",
            json!({ "agent_id": agent.id, "allocated": body.allocated,
                    "auto_approve_limit": body.auto_approve_limit,
                    "max_request": body.max_request }),
            Some(&rid.0),
        )
        .await
        .map_err(|_| BudgetError::Internal("writing the audit row failed"))?;
        account_in(w.conn(), &agent.id)
            .await?
            .ok_or(BudgetError::NotFound("budget account"))
    }
    .await;
    Ok(Json(w.finish(result).await?.view()))
}

/// Body of a token request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// Tokens asked for (1 to the main agent's `max_request`).
    pub amount: u64,
    /// Why (at most 1,000 bytes).
    #[serde(default)]
    pub reason: String,
}

/// A bot asks its main agent for tokens (as the guest's `budget.request`
/// does): approved at once up to the main agent's `auto_approve_limit` when
/// it can cover it, otherwise pending. Needs an admin or the owner of the
/// main agent.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/token-requests",
    tag = "budgets",
    params(("id" = String, Path, description = "The bot's id")),
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Made (approved or pending)", body = TokenRequest),
        (status = 404, description = "No such agent in this tenant"),
        (status = 409, description = "`no_parent`: a main agent asked"),
        (status = 422, description = "`invalid_amount` (details.limit), `invalid`"),
    ),
    security(("bearer" = []))
)]
async fn create_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NewTokenRequest>,
) -> Result<Response, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:write")?;
    record_ids(None, Some(&id), None);
    let agent = crate::agents::load_agent(&state, &principal.tenant_id, &id).await?;
    require_decider(&state, &principal, agent.parent_agent_id.as_deref()).await?;
    let by = Requester {
        tenant: Some(&principal.tenant_id),
        user: Some(&principal.user_id),
        request_id: Some(&rid.0),
    };
    let made = request_tokens(&state.db, by, &id, body.amount, &body.reason, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

/// Filters of `GET /v1/token-requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: Option<String>,
    /// Requests of this bot, or to this main agent.
    pub agent_id: Option<String>,
}

/// This tenant's token requests, oldest first.
#[utoipa::path(
    get,
    path = "/v1/token-requests",
    tag = "budgets",
    params(PageQuery, RequestFilter),
    responses(
        (status = 200, description = "A page", body = Page<TokenRequest>),
        (status = 422, description = "`invalid`: an unknown status"),
    ),
    security(("bearer" = []))
)]
async fn list_token_requests(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
    Query(filter): Query<RequestFilter>,
) -> Result<Json<Page<TokenRequest>>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    if let Some(s) = &filter.status
        && !["pending", "approved", "denied", "expired"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "status must be pending, approved, denied or expired",
        ));
    }
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    // Clauses are constants; values are bound in order.
    let mut sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM token_requests \
         WHERE tenant_id = $1 AND (created_at_ms, id) > ($2, $3)"
    );
    let mut next = 5;
    if filter.status.is_some() {
        sql.push_str(&format!(" AND status = ${next}"));
        next += 1;
    }
    if filter.agent_id.is_some() {
        sql.push_str(&format!(
            " AND (bot_agent_id = ${next} OR parent_agent_id = ${next})"
        ));
    }
    sql.push_str(" ORDER BY created_at_ms, id LIMIT $4");
    let mut query = sqlx::query(&sql)
        .bind(&principal.tenant_id)
        .bind(after_t)
        .bind(after_id)
        .bind(i64::from(limit) + 1);
    if let Some(s) = &filter.status {
        query = query.bind(s);
    }
    if let Some(a) = &filter.agent_id {
        query = query.bind(a);
    }
    let items = query
        .fetch_all(state.db.pool())
        .await
        .map_err(ApiError::internal)?
        .iter()
        .map(request_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Json(Page::from_rows(items, limit, |r| {
        (r.created_at_ms, r.id.clone())
    })))
}

/// One token request.
#[utoipa::path(
    get,
    path = "/v1/token-requests/{id}",
    tag = "budgets",
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The request", body = TokenRequest),
        (status = 404, description = "No such request in this tenant"),
    ),
    security(("bearer" = []))
)]
async fn get_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<TokenRequest>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:read")?;
    get_request(&state.db, Some(&principal.tenant_id), &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("token request"))
        .map(Json)
}

/// Approve a pending request: the tokens move from the main agent to the
/// bot (409 `budget_exhausted` if it can no longer cover them; the request
/// stays pending). Needs an admin or the main agent's owner.
#[utoipa::path(
    post,
    path = "/v1/token-requests/{id}/approve",
    tag = "budgets",
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "Approved", body = TokenRequest),
        (status = 404, description = "No such request in this tenant"),
        (status = 409, description = "`not_pending`, `budget_exhausted`"),
    ),
    security(("bearer" = []))
)]
async fn approve_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<TokenRequest>, ApiError> {
    decide(&state, &principal, &rid, &id, true).await.map(Json)
}

/// Deny a pending request. Needs an admin or the main agent's owner.
#[utoipa::path(
    post,
    path = "/v1/token-requests/{id}/deny",
    tag = "budgets",
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "Denied", body = TokenRequest),
        (status = 404, description = "No such request in this tenant"),
        (status = 409, description = "`not_pending`"),
    ),
    security(("bearer" = []))
)]
async fn deny_token_request(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<TokenRequest>, ApiError> {
    decide(&state, &principal, &rid, &id, false).await.map(Json)
}

async fn decide(
    state: &AppState,
    principal: &Principal,
    rid: &RequestId,
    id: &str,
    approve: bool,
) -> Result<TokenRequest, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("budgets:write")?;
    let req = get_request(&state.db, Some(&principal.tenant_id), id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("token request"))?;
    require_decider(state, principal, Some(&req.parent_agent_id)).await?;
    Ok(decide_request(
        &state.db,
        &principal.tenant_id,
        id,
        approve,
        &principal.user_id,
        Some(&rid.0),
        now_ms(),
    )
    .await?)
}

// ---- node API --------------------------------------------------------------

fn check_node_id(node_id: &str) -> Result<(), ApiError> {
    if node_id.is_empty() || node_id.len() > MAX_NODE_ID || node_id.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "node_id must be 1-{MAX_NODE_ID} bytes without control characters"
        )));
    }
    Ok(())
}

/// Body of `POST /v1/nodes/leases`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseAsk {
    /// The calling node.
    pub node_id: String,
    /// The agent whose budget to lease from.
    pub agent_id: String,
    /// Tokens wanted.
    pub amount: u64,
    /// Fewest tokens worth having (at least 1).
    #[serde(default)]
    pub min_amount: u64,
}

/// A node leases part of an agent's budget: granted = min(amount,
/// available) if that is at least min_amount.
#[utoipa::path(
    post,
    path = "/v1/nodes/leases",
    tag = "nodes",
    request_body = LeaseAsk,
    responses(
        (status = 201, description = "Granted", body = Lease),
        (status = 401, description = "Not the fleet's node token"),
        (status = 404, description = "Unknown agent"),
        (status = 409, description = "`budget_exhausted` (details.available)"),
        (status = 422, description = "`invalid`"),
    ),
    security(("bearer" = []))
)]
async fn node_grant_lease(
    State(state): State<AppState>,
    _node: NodeAuth,
    JsonBody(ask): JsonBody<LeaseAsk>,
) -> Result<Response, ApiError> {
    check_node_id(&ask.node_id)?;
    record_ids(None, Some(&ask.agent_id), None);
    let ttl_ms =
        i64::try_from(state.config.lease_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let lease = grant_lease(
        &state.db,
        &ask.node_id,
        &ask.agent_id,
        ask.amount,
        ask.min_amount,
        ttl_ms,
        now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(lease)).into_response())
}

/// Body of `POST /v1/nodes/leases/{lease_id}/return`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseGiveBack {
    /// The calling node.
    pub node_id: String,
    /// Tokens spent against the lease (may exceed what it granted).
    pub spent: u64,
}

/// A node returns a lease with what it spent. Idempotent: a second return
/// answers the first one's result.
#[utoipa::path(
    post,
    path = "/v1/nodes/leases/{lease_id}/return",
    tag = "nodes",
    params(("lease_id" = String, Path, description = "Lease id")),
    request_body = LeaseGiveBack,
    responses(
        (status = 200, description = "Returned", body = LeaseReturn),
        (status = 401, description = "Not the fleet's node token"),
        (status = 404, description = "Unknown lease"),
    ),
    security(("bearer" = []))
)]
async fn node_return_lease(
    State(state): State<AppState>,
    _node: NodeAuth,
    Path(lease_id): Path<String>,
    JsonBody(back): JsonBody<LeaseGiveBack>,
) -> Result<Json<LeaseReturn>, ApiError> {
    check_node_id(&back.node_id)?;
    // Only the node that took a lease returns it: another node returning it
    // with `spent: 0` would refund tokens the holder is still spending. A
    // lease's node never changes, so checking before the return is enough.
    let holder: Option<(String,)> =
        sqlx::query_as("SELECT node_id FROM budget_leases WHERE id = $1")
            .bind(&lease_id)
            .fetch_optional(state.db.pool())
            .await
            .map_err(ApiError::internal)?;
    if holder.is_some_and(|(node,)| node != back.node_id) {
        return Err(ApiError::not_found("lease"));
    }
    Ok(Json(
        return_lease(&state.db, &lease_id, back.spent, now_ms()).await?,
    ))
}

/// An agent's balance, for a node.
#[utoipa::path(
    get,
    path = "/v1/nodes/budgets/{agent_id}",
    tag = "nodes",
    params(("agent_id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Its balance", body = NodeBudget),
        (status = 401, description = "Not the fleet's node token"),
        (status = 404, description = "Unknown agent"),
    ),
    security(("bearer" = []))
)]
async fn node_budget(
    State(state): State<AppState>,
    _node: NodeAuth,
    Path(agent_id): Path<String>,
) -> Result<Json<NodeBudget>, ApiError> {
    record_ids(None, Some(&agent_id), None);
    let acct = load_account(&state.db, &agent_id)
        .await
        .map_err(ApiError::internal)?;
    let budget = match acct {
        Some(a) => NodeBudget {
            allocated: to_u64(a.allocated),
            spent: to_u64(a.spent),
            reserved: to_u64(a.leased),
            available: to_u64(a.available()),
            period: a.period,
        },
        None => {
            // An agent from before budgets existed has none.
            let mut conn = state
                .db
                .pool()
                .acquire()
                .await
                .map_err(ApiError::internal)?;
            if agent_facts(&mut conn, &agent_id)
                .await
                .map_err(ApiError::internal)?
                .is_none()
            {
                return Err(ApiError::not_found("agent"));
            }
            NodeBudget {
                allocated: 0,
                spent: 0,
                reserved: 0,
                available: 0,
                period: utc_month(now_ms()),
            }
        }
    };
    Ok(Json(budget))
}

/// Body of `POST /v1/nodes/token-requests`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeTokenAsk {
    /// The calling node.
    pub node_id: String,
    /// The bot asking.
    pub agent_id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// A token request as a guest sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeTokenRequest {
    /// `tkr_...`.
    pub id: String,
    /// Tokens asked for.
    pub amount: u64,
    /// Why.
    pub reason: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
}

impl From<TokenRequest> for NodeTokenRequest {
    fn from(r: TokenRequest) -> Self {
        Self {
            id: r.id,
            amount: r.amount,
            reason: r.reason,
            status: r.status,
        }
    }
}

/// A bot's token request from its guest (`budget.request`).
#[utoipa::path(
    post,
    path = "/v1/nodes/token-requests",
    tag = "nodes",
    request_body = NodeTokenAsk,
    responses(
        (status = 201, description = "Made (approved or pending)", body = NodeTokenRequest),
        (status = 401, description = "Not the fleet's node token"),
        (status = 404, description = "Unknown agent"),
        (status = 409, description = "`no_parent`: a main agent asked"),
        (status = 422, description = "`invalid_amount` (details.limit), `invalid`"),
    ),
    security(("bearer" = []))
)]
async fn node_create_token_request(
    State(state): State<AppState>,
    _node: NodeAuth,
    Extension(rid): Extension<RequestId>,
    JsonBody(ask): JsonBody<NodeTokenAsk>,
) -> Result<Response, ApiError> {
    check_node_id(&ask.node_id)?;
    record_ids(None, Some(&ask.agent_id), None);
    let by = Requester {
        tenant: None,
        user: None,
        request_id: Some(&rid.0),
    };
    let made = request_tokens(
        &state.db,
        by,
        &ask.agent_id,
        ask.amount,
        &ask.reason,
        now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(NodeTokenRequest::from(made))).into_response())
}

/// `?agent_id=` of a node's poll.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// The bot that made the request.
    pub agent_id: String,
}

/// A guest polls its request.
#[utoipa::path(
    get,
    path = "/v1/nodes/token-requests/{id}",
    tag = "nodes",
    params(("id" = String, Path, description = "Request id"), PollQuery),
    responses(
        (status = 200, description = "The request", body = NodeTokenRequest),
        (status = 401, description = "Not the fleet's node token"),
        (status = 404, description = "Not that agent's request"),
    ),
    security(("bearer" = []))
)]
async fn node_get_token_request(
    State(state): State<AppState>,
    _node: NodeAuth,
    Path(id): Path<String>,
    Query(poll): Query<PollQuery>,
) -> Result<Json<NodeTokenRequest>, ApiError> {
    record_ids(None, Some(&poll.agent_id), None);
    get_request(&state.db, None, &id)
        .await
        .map_err(ApiError::internal)?
        .filter(|r| r.agent_id == poll.agent_id)
        .map(|r| Json(NodeTokenRequest::from(r)))
        .ok_or_else(|| ApiError::not_found("token request"))
}
