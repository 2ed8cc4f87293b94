//! The lease writer's SQLite form (see `group.rs`): a group's two
//! queries, under this module's turn.
//!
//! Each query through sqlx's SQLite driver is a round trip to the
//! connection's worker thread, and each commit writes every page the
//! transaction touched to the WAL, so a group costs two queries and one
//! commit whatever its size. The first query begins an `IMMEDIATE`
//! transaction (SQLite's write lock: no connection changes anything until
//! the commit, so what is read stays true) and reads the group's leases and
//! accounts; the second writes every change with a few multi-row
//! statements (`UPDATE ... FROM (VALUES ...)`, multi-row `INSERT`s;
//! anonymous `?` parameters, see [`crate::db::Db::values_list`]), checks
//! that each wrote the rows it meant to, and commits.

use std::fmt::Write as _;

use sqlx::AnyConnection;

use super::group::{Changes, Seen, apply, group_ids};
use super::leases::{LeaseDone, LeaseOp};
use super::model::BudgetError;
use super::store::sqlite_turn;
use crate::db::{Db, new_id};

/// Apply `ops` in one transaction on the writer's connection, holding
/// this module's turn. Refusals are answers; only a database failure is
/// an error, and then nothing of `ops` stands.
pub(super) async fn write(
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
    let (lease_ids, agent_ids) = group_ids(ops);

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
    let mut seen = Seen::default();
    seen.add_rows(read.fetch_all(&mut *conn).await?)?;
    let (results, changes) = apply(ops, seen);

    // Write every change, check each statement wrote the rows it meant
    // to (see [`GUARD`]) and commit, in one multi-statement query.
    let Changes {
        claimed,
        accounts: changed,
        new_leases,
        entries,
    } = changes;
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
    for (agent, d_spent, d_leased, at) in &changed {
        q = q.bind(agent).bind(d_spent).bind(d_leased).bind(at);
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
