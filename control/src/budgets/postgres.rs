//! The lease writer's PostgreSQL form (see `group.rs`): a group is one
//! transaction of four round trips, whatever its size.
//!
//! 1. `BEGIN`;
//! 2. the leases it returns, locked (`FOR UPDATE`, in id order) with each
//!    one's recorded return;
//! 3. the accounts it touches, locked (`FOR UPDATE`, in agent id order);
//! 4. one statement of data-modifying CTEs that writes every change with
//!    multi-row `UPDATE ... FROM (VALUES ...)` and `INSERT`s and answers how
//!    many rows each wrote, checked before the `COMMIT`.
//!
//! Locks are taken leases first, then accounts, each in one order, as every
//! other replica's writer and the lease expiry take them, so writers never
//! deadlock each other. A multi-account change elsewhere (a carve) may lock
//! two of a group's accounts the other way round; PostgreSQL then aborts one
//! of the two, and if it is the group its operations are applied one by
//! one (`group::commit_group`).

use std::fmt::Write as _;

use sqlx::{AnyConnection, Connection as _, Row as _};

use super::group::{Changes, Seen, apply, group_ids};
use super::leases::{LeaseDone, LeaseOp};
use super::model::BudgetError;
use crate::db::new_id;

/// `$first, $first+1, ...`: `n` numbered placeholders.
fn params(first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    for i in first..first + n {
        if i > first {
            out.push_str(", ");
        }
        let _ = write!(out, "${i}");
    }
    out
}

/// `n` rows of `cols` numbered placeholders from `$first`, each row's
/// values around `row`'s `{}` (constants may sit beside them): the text
/// and the next free number.
fn rows(first: usize, n: usize, cols: usize, row: &str) -> (String, usize) {
    let mut out = String::new();
    let mut next = first;
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&row.replace("{}", &params(next, cols)));
        next += cols;
    }
    (out, next)
}

/// Apply `ops` in one transaction on `conn`. Refusals are answers; only a
/// database failure (or a write that did not touch the rows it meant to) is
/// an error, and then the transaction is rolled back and nothing of `ops`
/// stands.
pub(super) async fn write_group(
    conn: &mut AnyConnection,
    ops: &[&LeaseOp],
) -> Result<Vec<Result<LeaseDone, BudgetError>>, sqlx::Error> {
    let (lease_ids, agent_ids) = group_ids(ops);
    let mut tx = conn.begin().await?;
    let mut seen = Seen::default();
    if !lease_ids.is_empty() {
        let sql = format!(
            "SELECT 'lease' AS tag, l.id AS id, l.tenant_id, l.user_id, l.agent_id, \
             l.granted, l.status, l.returned_at_ms, l.provisional_spent AS provisional, \
             e.amount AS r_returned, e.d_spent AS r_charged, e.uncovered AS r_uncovered \
             FROM budget_leases l LEFT JOIN budget_entries e \
             ON e.lease_id = l.id AND e.kind = 'lease_return' \
             WHERE l.id IN ({}) ORDER BY l.id FOR UPDATE OF l",
            params(1, lease_ids.len())
        );
        let mut read = sqlx::query(&sql);
        for id in &lease_ids {
            read = read.bind(*id);
        }
        seen.add_rows(read.fetch_all(&mut *tx).await?)?;
    }
    let mut wanted = Vec::new();
    if !agent_ids.is_empty() {
        wanted.push(format!("agent_id IN ({})", params(1, agent_ids.len())));
    }
    if !lease_ids.is_empty() {
        wanted.push(format!(
            "agent_id IN (SELECT agent_id FROM budget_leases WHERE id IN ({}))",
            params(agent_ids.len() + 1, lease_ids.len())
        ));
    }
    let sql = format!(
        "SELECT 'account' AS tag, agent_id AS id, tenant_id, user_id, period, allocated, \
         spent, leased FROM budget_accounts WHERE {} ORDER BY agent_id FOR UPDATE",
        wanted.join(" OR ")
    );
    let mut read = sqlx::query(&sql);
    for id in agent_ids.iter().chain(&lease_ids) {
        read = read.bind(*id);
    }
    seen.add_rows(read.fetch_all(&mut *tx).await?)?;

    let (results, changes) = apply(ops, seen);
    write_changes(&mut tx, changes).await?;
    tx.commit().await?;
    Ok(results)
}

/// Write a group's changes with one statement and check each part wrote
/// the rows it meant to.
async fn write_changes(conn: &mut AnyConnection, changes: Changes) -> Result<(), sqlx::Error> {
    let Changes {
        claimed,
        accounts,
        new_leases,
        entries,
    } = changes;
    let mut parts: Vec<(&str, String, usize)> = Vec::new();
    let mut next = 1;
    if !claimed.is_empty() {
        let (values, n) = rows(next, claimed.len(), 4, "({})");
        next = n;
        parts.push((
            "c",
            format!(
                "UPDATE budget_leases SET status = v.status, spent = v.spent, \
                 returned_at_ms = v.at FROM (VALUES {values}) AS v (id, status, spent, at) \
                 WHERE budget_leases.id = v.id AND budget_leases.returned_at_ms IS NULL \
                 RETURNING 1"
            ),
            claimed.len(),
        ));
    }
    if !accounts.is_empty() {
        let (values, n) = rows(next, accounts.len(), 4, "({})");
        next = n;
        parts.push((
            "a",
            format!(
                "UPDATE budget_accounts SET spent = budget_accounts.spent + v.d_spent, \
                 leased = budget_accounts.leased + v.d_leased, updated_at_ms = v.at \
                 FROM (VALUES {values}) AS v (agent_id, d_spent, d_leased, at) \
                 WHERE budget_accounts.agent_id = v.agent_id RETURNING 1"
            ),
            accounts.len(),
        ));
    }
    if !new_leases.is_empty() {
        let (values, n) = rows(next, new_leases.len(), 8, "({}, NULL, 'active', NULL)");
        next = n;
        parts.push((
            "l",
            format!(
                "INSERT INTO budget_leases (id, tenant_id, user_id, agent_id, node_id, granted, \
                 created_at_ms, expires_at_ms, spent, status, returned_at_ms) \
                 VALUES {values} RETURNING 1"
            ),
            new_leases.len(),
        ));
    }
    if !entries.is_empty() {
        let (values, _) = rows(next, entries.len(), 14, "({}, 0, 0, 0, 0, 0, NULL)");
        parts.push((
            "e",
            format!(
                "INSERT INTO budget_entries (id, tenant_id, user_id, agent_id, kind, amount, \
                 d_spent, d_leased, uncovered, lease_id, counterparty, note, period, at_ms, \
                 d_allocated, d_grant, d_monthly, d_carved, d_retired, request_id) \
                 VALUES {values} RETURNING 1"
            ),
            entries.len(),
        ));
    }
    if parts.is_empty() {
        // Every operation was refused or answered from a record.
        return Ok(());
    }
    let mut sql = String::from("WITH ");
    for (i, (name, part, _)) in parts.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{name} AS ({part})");
    }
    sql.push_str(" SELECT ");
    for (i, (name, _, _)) in parts.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "(SELECT count(*) FROM {name}) AS {name}");
    }
    let mut q = sqlx::query(&sql);
    for c in &claimed {
        q = q.bind(&c.id).bind(&c.status).bind(c.spent).bind(c.at);
    }
    for (agent, d_spent, d_leased, at) in &accounts {
        q = q.bind(agent).bind(d_spent).bind(d_leased).bind(at);
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
    let row = q.fetch_one(&mut *conn).await?;
    for (name, _, expected) in &parts {
        let written: i64 = row.try_get(*name)?;
        if usize::try_from(written).ok() != Some(*expected) {
            // The rows were locked, so this is a defect, not a race: the
            // caller drops the transaction, which rolls it back.
            return Err(sqlx::Error::Protocol(format!(
                "a group of lease operations wrote {written} rows of `{name}`, not {expected}"
            )));
        }
    }
    Ok(())
}
