//! What every budget write shares, over sqlx's `Any` driver (one SQL text for SQLite and PostgreSQL): write transactions, `budget_entries` rows, user and account rows, users.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use delta_budget_rules as rules;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Transaction};

use crate::config::ControlConfig;
use crate::db::{Backend, Db, new_id, utc_month};

use super::model::*;

// ---- write transactions ----------------------------------------------------

/// One in-process lock per SQLite database: this module's writers take turns
/// here rather than in SQLite's busy handler.
pub(super) static SQLITE_TURNS: LazyLock<
    std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
> = LazyLock::new(Default::default);

/// A database's identity within this process.
pub(super) fn db_key(db: &Db) -> String {
    db.pool().connect_options().database_url.to_string()
}

pub(crate) fn sqlite_turn(db: &Db) -> Arc<tokio::sync::Mutex<()>> {
    let key = db_key(db);
    let mut turns = SQLITE_TURNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(turns.entry(key).or_default())
}

/// A write transaction (and, on SQLite, this module's turn to write).
/// Fields drop in order: the transaction before the turn.
pub(super) struct Write {
    pub(super) tx: Transaction<'static, Any>,
    pub(super) _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Write {
    pub(super) async fn begin(db: &Db) -> Result<Self, sqlx::Error> {
        let turn = match db.backend() {
            Backend::Sqlite => Some(sqlite_turn(db).lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = db.begin().await?;
        Ok(Self { tx, _turn: turn })
    }

    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        let Self { tx, _turn } = self;
        tx.commit().await
    }

    /// Roll back (before giving up the turn), logging a failure: the
    /// transaction's error is what the caller reports.
    pub(super) async fn abandon(self) {
        let Self { tx, _turn } = self;
        if let Err(r) = tx.rollback().await {
            tracing::warn!(error = %r, "rolling back a budget transaction");
        }
    }

    /// Commit on success; roll back (before giving up the turn) on error.
    pub(super) async fn finish<T>(self, result: Result<T, BudgetError>) -> Result<T, BudgetError> {
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
pub(super) struct Entry<'a> {
    pub(super) tenant: &'a str,
    pub(super) user: &'a str,
    pub(super) agent: Option<&'a str>,
    pub(super) kind: &'a str,
    pub(super) amount: i64,
    pub(super) d_allocated: i64,
    pub(super) d_spent: i64,
    pub(super) d_leased: i64,
    pub(super) d_grant: i64,
    pub(super) d_monthly: i64,
    pub(super) d_carved: i64,
    pub(super) d_retired: i64,
    pub(super) uncovered: i64,
    pub(super) lease_id: Option<&'a str>,
    pub(super) request_id: Option<&'a str>,
    pub(super) counterparty: Option<&'a str>,
    pub(super) note: Option<&'a str>,
    pub(super) period: &'a str,
    pub(super) at: i64,
}

pub(super) async fn insert_entry(
    conn: &mut AnyConnection,
    e: Entry<'_>,
) -> Result<(), sqlx::Error> {
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
pub(super) struct UserRow {
    pub(super) tier: String,
    pub(super) monthly_allocation: i64,
    pub(super) carved: i64,
    pub(super) retired: i64,
    pub(super) period: String,
}

pub(super) const USER_COLUMNS: &str = "tier, monthly_allocation, carved, retired, period";

pub(super) fn user_from_row(row: &AnyRow) -> Result<UserRow, sqlx::Error> {
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
pub(super) struct AccountRow {
    pub(super) agent_id: String,
    pub(super) tenant_id: String,
    pub(super) user_id: String,
    pub(super) kind: String,
    pub(super) parent: Option<String>,
    pub(super) grant: i64,
    pub(super) allocated: i64,
    pub(super) spent: i64,
    pub(super) leased: i64,
    pub(super) auto_approve_limit: i64,
    pub(super) max_request: i64,
    pub(super) period: String,
}

impl AccountRow {
    pub(super) fn available(&self) -> i64 {
        rules::available(self.allocated, self.spent, self.leased)
    }

    pub(super) fn view(&self) -> AgentBudget {
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

pub(super) const ACCOUNT_COLUMNS: &str = "agent_id, tenant_id, user_id, kind, parent_agent_id, grant_amount, \
     allocated, spent, leased, auto_approve_limit, max_request, period";

pub(super) fn account_from_row(row: &AnyRow) -> Result<AccountRow, sqlx::Error> {
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

pub(super) async fn account_in(
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

pub(super) async fn load_account(
    db: &Db,
    agent_id: &str,
) -> Result<Option<AccountRow>, sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    account_in(&mut conn, agent_id).await
}

pub(super) async fn available_of(
    conn: &mut AnyConnection,
    agent_id: &str,
) -> Result<u64, sqlx::Error> {
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
pub(super) fn tier_allocation(config: &ControlConfig, tier: &str) -> Option<u64> {
    config.tiers.get(tier).copied()
}

/// What a user's new account in another tenant starts with: their tier
/// (that of their oldest account, else the default) and what of its
/// allocation their accounts in other tenants do not already hold. A
/// user's tier is one monthly allocation however many tenants they are in:
/// a new tenant draws on it rather than bringing a fresh one.
pub(super) async fn fresh_share(
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
pub(super) async fn ensure_user_in(
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
pub(super) async fn lock_user(
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
