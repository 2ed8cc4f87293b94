//! Accounts, transfers and the write transaction over sqlx's `Any` driver
//! (one SQL text for both backends, except the row locks).

use std::collections::{BTreeMap, BTreeSet};

use delta_money::{
    Account, AccountFlags, Applied, PendingRef, PendingState, Transfer, TransferError, TransferKind,
};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Transaction};

use crate::db::{Backend, Db};

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MoneyError {
    /// The rules refused a transfer; nothing changed.
    #[error(transparent)]
    Refused(#[from] TransferError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A stored row breaks the ledger's shape (a defect, never input).
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
}

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A tenant's balance (a business's funds, an agent owner's earnings).
    Tenant,
    /// A tenant's funds held for its open bounties.
    Escrow,
    /// The platform's fees.
    Platform,
    /// Money outside the system (top-ups come from here); may go negative.
    External,
}

impl AccountKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Escrow => "escrow",
            Self::Platform => "platform",
            Self::External => "external",
        }
    }

    fn flags(self) -> AccountFlags {
        match self {
            Self::External => AccountFlags::NONE,
            Self::Tenant | Self::Escrow | Self::Platform => AccountFlags::NO_OVERDRAFT,
        }
    }
}

/// The id of `kind`'s account of `tenant` (tenant and escrow accounts) in
/// `currency`.
pub fn account_id(kind: AccountKind, tenant: Option<&str>, currency: &str) -> String {
    match (kind, tenant) {
        (AccountKind::Tenant | AccountKind::Escrow, Some(t)) => {
            format!("{}:{t}:{currency}", kind.as_str())
        }
        _ => format!("{}:{currency}", kind.as_str()),
    }
}

/// A write transaction, and on SQLite this process's writer turn (shared
/// with the budgets). Fields drop in order: the transaction before the turn.
pub struct Write {
    tx: Transaction<'static, Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Write {
    /// Begin.
    pub async fn begin(db: &Db) -> Result<Self, sqlx::Error> {
        let turn = match db.backend() {
            Backend::Sqlite => Some(crate::budgets::sqlite_turn(db).lock_owned().await),
            Backend::Postgres => None,
        };
        // On SQLite the write lock is taken at BEGIN: a deferred
        // transaction that reads first and writes later fails at once with
        // SQLITE_BUSY (no busy_timeout wait) when a writer outside this
        // turn (the webhook worker, a run's end) committed in between.
        let tx = match db.backend() {
            Backend::Sqlite => db.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => db.begin().await?,
        };
        Ok(Self { tx, _turn: turn })
    }

    /// The transaction's connection.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Commit.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let Self { tx, _turn } = self;
        tx.commit().await
    }

    /// Roll back (before giving up the turn), logging a failure.
    pub async fn abandon(self) {
        let Self { tx, _turn } = self;
        if let Err(e) = tx.rollback().await {
            tracing::warn!(error = %e, "rolling back a ledger transaction");
        }
    }
}

/// Create `kind`'s account of `tenant` in `currency` unless it exists; its id.
pub async fn ensure_account(
    conn: &mut AnyConnection,
    kind: AccountKind,
    tenant: Option<&str>,
    currency: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = account_id(kind, tenant, currency);
    sqlx::query(
        "INSERT INTO money_accounts (id, tenant_id, kind, currency, flags, debits_pending, \
         debits_posted, credits_pending, credits_posted, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0, $6, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(tenant)
    .bind(kind.as_str())
    .bind(currency)
    .bind(kind.flags().bits())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

const ACCOUNT_COLUMNS: &str = "id, currency, flags, debits_pending, debits_posted, \
     credits_pending, credits_posted";

fn counter(row: &AnyRow, col: &str) -> Result<u64, MoneyError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| MoneyError::Corrupt(format!("{col} = {v}")))
}

fn account_from_row(row: &AnyRow) -> Result<Account, MoneyError> {
    let bits: i64 = row.try_get("flags")?;
    Ok(Account {
        id: row.try_get("id")?,
        ledger: row.try_get("currency")?,
        flags: AccountFlags::from_bits(bits)
            .ok_or_else(|| MoneyError::Corrupt(format!("flags = {bits}")))?,
        debits_pending: counter(row, "debits_pending")?,
        debits_posted: counter(row, "debits_posted")?,
        credits_pending: counter(row, "credits_pending")?,
        credits_posted: counter(row, "credits_posted")?,
    })
}

fn stored(v: u64) -> Result<i64, MoneyError> {
    i64::try_from(v).map_err(|_| MoneyError::Refused(TransferError::Overflow))
}

/// Lock `ids` (sorted, once each) and read them; missing ones are absent.
async fn lock_accounts(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<BTreeMap<String, Account>, MoneyError> {
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let backend = Backend::of(conn);
    let placeholders = backend.param_list(ids.len());
    if backend == Backend::Sqlite {
        // A write first: a SQLite transaction that reads first cannot take
        // the write lock once another connection has committed. (Under the
        // writer turn this is the lock; the statement changes nothing.)
        let sql = format!(
            "UPDATE money_accounts SET updated_at_ms = updated_at_ms WHERE id IN ({placeholders})"
        );
        let mut q = sqlx::query(&sql);
        for id in &ids {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    let lock = match backend {
        // Row locks in id order: two writers touching the same accounts
        // queue instead of deadlocking.
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM money_accounts WHERE id IN ({placeholders}) ORDER BY id{lock}"
    );
    let mut q = sqlx::query(&sql);
    for id in &ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| account_from_row(r).map(|a| (a.id.clone(), a)))
        .collect()
}

fn transfer_from_row(row: &AnyRow) -> Result<Transfer, MoneyError> {
    let kind: String = row.try_get("kind")?;
    let pending_id: Option<String> = row.try_get("pending_id")?;
    Ok(Transfer {
        id: row.try_get("id")?,
        debit_account_id: row.try_get("debit_account_id")?,
        credit_account_id: row.try_get("credit_account_id")?,
        amount: counter(row, "amount")?,
        ledger: row.try_get("currency")?,
        kind: TransferKind::parse(&kind, pending_id)
            .ok_or_else(|| MoneyError::Corrupt(format!("transfer kind {kind}")))?,
    })
}

/// Stored transfers among `ids`, with their pending state, by id: one
/// query per [`READ_CHUNK`] ids.
async fn stored_transfers(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<BTreeMap<String, (Transfer, Option<PendingState>)>, MoneyError> {
    let backend = Backend::of(conn);
    let mut found = BTreeMap::new();
    for chunk in ids.chunks(READ_CHUNK) {
        let sql = format!(
            "SELECT t.id, t.debit_account_id, t.credit_account_id, t.amount, t.currency, t.kind, \
             t.pending_id, p.state FROM money_transfers t \
             LEFT JOIN money_pending p ON p.transfer_id = t.id WHERE t.id IN ({})",
            backend.param_list(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let state: Option<String> = row.try_get("state")?;
            let state = state
                .map(|s| {
                    PendingState::parse(&s).ok_or_else(|| MoneyError::Corrupt(format!("state {s}")))
                })
                .transpose()?;
            let t = transfer_from_row(&row)?;
            found.insert(t.id.clone(), (t, state));
        }
    }
    Ok(found)
}

/// Ids per `IN (...)` read.
const READ_CHUNK: usize = 500;
/// Rows per multi-row `INSERT` (8 parameters each: far below SQLite's and
/// PostgreSQL's limits on parameters per statement).
const INSERT_CHUNK: usize = 250;

/// Apply `transfers` in order inside the caller's transaction (see the
/// module documentation). Each answers [`Applied::Created`] or, for a retry
/// of a stored transfer (or a repeat within the list), [`Applied::Existing`];
/// the first refusal is the error, and then nothing was written (the caller
/// rolls back all the same).
///
/// A list is applied as TigerBeetle applies a batch: the accounts are
/// locked and read once, the transfers and pending transfers the list
/// names are read once, the rules run in memory in list order (a later
/// transfer sees an earlier one, so one list may create a pending transfer
/// and post it), and then each touched account is written once and the new
/// transfers in multi-row inserts. A thousand transfers between a few dozen
/// accounts cost a few dozen statements instead of four thousand.
pub async fn apply_transfers(
    conn: &mut AnyConnection,
    transfers: &[Transfer],
    now: i64,
) -> Result<Vec<Applied>, MoneyError> {
    if transfers.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = transfers
        .iter()
        .flat_map(|t| [t.debit_account_id.as_str(), t.credit_account_id.as_str()])
        .collect();
    let mut accounts = lock_accounts(conn, &ids).await?;
    // Read after the locks: a concurrent writer of the same ids has
    // committed by now, and its transfers are answered as stored.
    let mut named: Vec<&str> = transfers
        .iter()
        .flat_map(|t| std::iter::once(t.id.as_str()).chain(t.kind.pending_id()))
        .collect();
    named.sort_unstable();
    named.dedup();
    let mut known = stored_transfers(conn, &named).await?;
    let mut touched = BTreeSet::new();
    let mut created: Vec<&Transfer> = Vec::new();
    let mut settled: Vec<(&str, PendingState, &str)> = Vec::new();
    let mut results = Vec::with_capacity(transfers.len());
    for t in transfers {
        if let Some((existing, _)) = known.get(&t.id) {
            results.push(delta_money::check_existing(existing, t)?);
            continue;
        }
        if t.debit_account_id == t.credit_account_id {
            return Err(TransferError::SameAccount.into());
        }
        let missing = |id: &str| TransferError::AccountNotFound(id.to_owned());
        let mut debit = accounts
            .get(&t.debit_account_id)
            .cloned()
            .ok_or_else(|| missing(&t.debit_account_id))?;
        let mut credit = accounts
            .get(&t.credit_account_id)
            .cloned()
            .ok_or_else(|| missing(&t.credit_account_id))?;
        let pending_ref = t.kind.pending_id().and_then(|pid| {
            let (p, state) = known.get(pid)?;
            Some(PendingRef {
                transfer: p,
                state: (*state)?,
            })
        });
        let effect = delta_money::apply(&mut debit, &mut credit, t, pending_ref)?;
        if let (Some(pid), Some(state)) = (t.kind.pending_id(), effect.pending_state) {
            if let Some(entry) = known.get_mut(pid) {
                entry.1 = Some(state);
            }
            settled.push((pid, state, t.id.as_str()));
        }
        let own_state = (t.kind == TransferKind::Pending).then_some(PendingState::Pending);
        known.insert(t.id.clone(), (t.clone(), own_state));
        touched.insert(debit.id.clone());
        touched.insert(credit.id.clone());
        accounts.insert(debit.id.clone(), debit);
        accounts.insert(credit.id.clone(), credit);
        created.push(t);
        results.push(Applied::Created);
    }
    write_batch(conn, &accounts, &touched, &created, &settled, now).await?;
    Ok(results)
}

/// The writes of [`apply_transfers`]: each touched account once, the new
/// transfers and pending rows in multi-row inserts, then the settlements
/// (after the inserts: a pending transfer of the same list is settled in
/// the same statement shape as a stored one).
async fn write_batch(
    conn: &mut AnyConnection,
    accounts: &BTreeMap<String, Account>,
    touched: &BTreeSet<String>,
    created: &[&Transfer],
    settled: &[(&str, PendingState, &str)],
    now: i64,
) -> Result<(), MoneyError> {
    let backend = Backend::of(conn);
    for id in touched {
        let a = &accounts[id];
        sqlx::query(
            "UPDATE money_accounts SET debits_pending = $2, debits_posted = $3, \
             credits_pending = $4, credits_posted = $5, updated_at_ms = $6 WHERE id = $1",
        )
        .bind(&a.id)
        .bind(stored(a.debits_pending)?)
        .bind(stored(a.debits_posted)?)
        .bind(stored(a.credits_pending)?)
        .bind(stored(a.credits_posted)?)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    for chunk in created.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO money_transfers (id, debit_account_id, credit_account_id, amount, \
             currency, kind, pending_id, created_at_ms) VALUES {}",
            backend.values_list(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for t in chunk {
            q = q
                .bind(&t.id)
                .bind(&t.debit_account_id)
                .bind(&t.credit_account_id)
                .bind(stored(t.amount)?)
                .bind(&t.ledger)
                .bind(t.kind.as_str())
                .bind(t.kind.pending_id())
                .bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    let pending: Vec<&str> = created
        .iter()
        .filter(|t| t.kind == TransferKind::Pending)
        .map(|t| t.id.as_str())
        .collect();
    for chunk in pending.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO money_pending (transfer_id, state, settled_by, updated_at_ms) VALUES {}",
            backend.values_list(chunk.len(), 4)
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q
                .bind(*id)
                .bind(PendingState::Pending.as_str())
                .bind(None::<String>)
                .bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    for (pid, state, by) in settled {
        let done = sqlx::query(
            "UPDATE money_pending SET state = $2, settled_by = $3, updated_at_ms = $4 \
             WHERE transfer_id = $1 AND state = 'pending'",
        )
        .bind(*pid)
        .bind(state.as_str())
        .bind(*by)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Err(MoneyError::Corrupt(format!(
                "pending transfer {pid} changed under its lock"
            )));
        }
    }
    Ok(())
}

/// A tenant's accounts (tenant and escrow, every currency).
pub async fn tenant_accounts(db: &Db, tenant: &str) -> Result<Vec<(String, Account)>, MoneyError> {
    let rows = sqlx::query(&format!(
        "SELECT kind, {ACCOUNT_COLUMNS} FROM money_accounts WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("kind")?, account_from_row(r)?)))
        .collect()
}

/// Σ balances and Σ pending over every account of `currency`: both zero in
/// a sound ledger (tests and operators check it).
pub async fn totals(db: &Db, currency: &str) -> Result<(i64, i64), MoneyError> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(credits_posted - debits_posted), 0) AS BIGINT) AS posted, \
         CAST(COALESCE(SUM(credits_pending - debits_pending), 0) AS BIGINT) AS pending \
         FROM money_accounts WHERE currency = $1",
    )
    .bind(currency)
    .fetch_one(db.pool())
    .await?;
    Ok((row.try_get("posted")?, row.try_get("pending")?))
}
