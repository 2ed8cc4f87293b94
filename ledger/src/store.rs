//! Loading the [`Book`] from SQLite and writing a batch's [`Effects`] in one
//! transaction.

use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::book::{Account, Book, Effects, OpenRes, ReqRow, User};
use crate::model::{AccountKind, Error, parse_status, status_str};

/// Rows per multi-row statement. Only these sizes are used, so the few
/// distinct statements stay in sqlx's prepared-statement cache instead of
/// being parsed again for every batch size; powers of two keep the number of
/// statements (each a round trip to sqlx's worker thread) per batch small.
/// 13 columns x 256 rows is far below SQLite's limit of 32,766 parameters.
const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// `items` cut into slices whose lengths are all in [`CHUNKS`].
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let n = CHUNKS.iter().copied().find(|c| *c <= items.len())?;
        let (head, rest) = items.split_at(n);
        items = rest;
        Some(head)
    })
}

/// Read every user, account, open reservation and pending request, and the
/// next free ids.
pub(crate) async fn load(conn: &mut SqliteConnection) -> Result<Book, Error> {
    let mut book = Book::default();
    for r in sqlx::query(
        "SELECT user_id, tier, monthly_allocation, carved, period, created_at FROM users",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        book.users.insert(
            r.try_get("user_id")?,
            User {
                tier: r.try_get("tier")?,
                monthly_allocation: r.try_get("monthly_allocation")?,
                carved: r.try_get("carved")?,
                period: r.try_get("period")?,
                created_at: r.try_get("created_at")?,
            },
        );
    }
    for r in sqlx::query(
        "SELECT agent_id, kind, parent_id, user_id, grant_amount, allocated, spent, reserved, \
         auto_approve_limit, max_request, period, created_at FROM accounts",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let kind: String = r.try_get("kind")?;
        book.accounts.insert(
            r.try_get("agent_id")?,
            Account {
                kind: AccountKind::parse(&kind)?,
                parent: r.try_get("parent_id")?,
                user_id: r.try_get("user_id")?,
                grant: r.try_get("grant_amount")?,
                allocated: r.try_get("allocated")?,
                spent: r.try_get("spent")?,
                reserved: r.try_get("reserved")?,
                auto_approve_limit: r.try_get("auto_approve_limit")?,
                max_request: r.try_get("max_request")?,
                period: r.try_get("period")?,
                created_at: r.try_get("created_at")?,
            },
        );
    }
    for r in sqlx::query("SELECT id, agent_id, amount, period FROM reservations")
        .fetch_all(&mut *conn)
        .await?
    {
        book.reservations.insert(
            r.try_get("id")?,
            OpenRes {
                agent_id: r.try_get("agent_id")?,
                amount: r.try_get("amount")?,
                period: r.try_get("period")?,
            },
        );
    }
    for r in sqlx::query(
        "SELECT id, bot_id, parent_id, amount, reason, status, created_at FROM token_requests \
         WHERE status = 'pending'",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let status: String = r.try_get("status")?;
        book.pending.insert(
            r.try_get("id")?,
            ReqRow {
                bot_id: r.try_get("bot_id")?,
                parent_id: r.try_get("parent_id")?,
                amount: r.try_get("amount")?,
                reason: r.try_get("reason")?,
                status: parse_status(&status)?,
                created_at: r.try_get("created_at")?,
                decided_at: None,
                decided_by: None,
            },
        );
    }
    // Finished reservations leave the table, but every reservation ever made
    // has a `reserve` entry, so the ledger knows the highest id used.
    let (next_res,): (i64,) = sqlx::query_as(
        "SELECT MAX(COALESCE((SELECT MAX(reservation_id) FROM ledger_entries), 0), \
                    COALESCE((SELECT MAX(id) FROM reservations), 0)) + 1",
    )
    .fetch_one(&mut *conn)
    .await?;
    let (next_req,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) + 1 FROM token_requests")
        .fetch_one(&mut *conn)
        .await?;
    book.next_res = next_res;
    book.next_req = next_req;
    Ok(book)
}

/// Write one batch's effects in a single transaction and commit it. With
/// `synchronous=FULL` the commit returns only after the WAL is on disk.
pub(crate) async fn flush(conn: &mut SqliteConnection, fx: &Effects) -> Result<(), Error> {
    let mut tx = conn.begin().await?;
    let now = fx.entries.first().map_or(0, |e| e.at);

    for (id, u) in &fx.user_rows {
        sqlx::query(
            "INSERT INTO users (user_id, tier, monthly_allocation, carved, period, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (user_id) DO UPDATE SET tier = ?2, monthly_allocation = ?3, carved = ?4, \
             period = ?5, updated_at = ?7",
        )
        .bind(id)
        .bind(&u.tier)
        .bind(u.monthly_allocation)
        .bind(u.carved)
        .bind(&u.period)
        .bind(u.created_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }

    for (id, a, before) in &fx.account_rows {
        let Some(before) = before else {
            sqlx::query(
                "INSERT INTO accounts (agent_id, kind, parent_id, user_id, grant_amount, allocated, spent, \
                 reserved, auto_approve_limit, max_request, period, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )
            .bind(id)
            .bind(a.kind.as_str())
            .bind(&a.parent)
            .bind(&a.user_id)
            .bind(a.grant)
            .bind(a.allocated)
            .bind(a.spent)
            .bind(a.reserved)
            .bind(a.auto_approve_limit)
            .bind(a.max_request)
            .bind(&a.period)
            .bind(a.created_at)
            .execute(&mut *tx)
            .await?;
            continue;
        };
        // Compare-and-set on the balance the batch started from: if anything
        // else changed the row (another process on the same file), refuse the
        // whole batch rather than overwrite it.
        let done = sqlx::query(
            "UPDATE accounts SET allocated = ?1, spent = ?2, reserved = ?3, period = ?4, \
             auto_approve_limit = ?5, max_request = ?6, updated_at = ?7 \
             WHERE agent_id = ?8 AND allocated = ?9 AND spent = ?10 AND reserved = ?11",
        )
        .bind(a.allocated)
        .bind(a.spent)
        .bind(a.reserved)
        .bind(&a.period)
        .bind(a.auto_approve_limit)
        .bind(a.max_request)
        .bind(now)
        .bind(id)
        .bind(before.allocated)
        .bind(before.spent)
        .bind(before.reserved)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Storage(format!(
                "account {id} was changed outside this ledger's writer"
            )));
        }
    }

    for (id, r) in &fx.requests {
        sqlx::query(
            "INSERT INTO token_requests (id, bot_id, parent_id, amount, reason, status, created_at, \
             decided_at, decided_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (id) DO UPDATE SET status = ?6, decided_at = ?8, decided_by = ?9",
        )
        .bind(id)
        .bind(&r.bot_id)
        .bind(&r.parent_id)
        .bind(r.amount)
        .bind(&r.reason)
        .bind(status_str(r.status))
        .bind(r.created_at)
        .bind(r.decided_at)
        .bind(&r.decided_by)
        .execute(&mut *tx)
        .await?;
    }

    let res: Vec<_> = fx.res_insert.iter().collect();
    for chunk in chunks(&res) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO reservations (id, agent_id, amount, purpose, run_id, period, created_at) ",
        );
        qb.push_values(chunk, |mut b, (id, r)| {
            b.push_bind(**id)
                .push_bind(&r.agent_id)
                .push_bind(r.amount)
                .push_bind(&r.purpose)
                .push_bind(&r.run_id)
                .push_bind(&r.period)
                .push_bind(r.created_at);
        });
        qb.build().execute(&mut *tx).await?;
    }

    for chunk in chunks(&fx.res_delete) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("DELETE FROM reservations WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        qb.push(")");
        let done = qb.build().execute(&mut *tx).await?;
        if done.rows_affected() != chunk.len() as u64 {
            return Err(Error::Storage(
                "a finished reservation was missing from the table".to_owned(),
            ));
        }
    }

    for chunk in chunks(&fx.entries) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO ledger_entries (at, period, user_id, agent_id, kind, amount, d_allocated, \
             d_spent, d_reserved, reservation_id, request_id, counterparty, note) ",
        );
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(e.at)
                .push_bind(&e.period)
                .push_bind(&e.user_id)
                .push_bind(&e.agent_id)
                .push_bind(e.kind)
                .push_bind(e.amount)
                .push_bind(e.d_allocated)
                .push_bind(e.d_spent)
                .push_bind(e.d_reserved)
                .push_bind(e.reservation_id)
                .push_bind(e.request_id)
                .push_bind(&e.counterparty)
                .push_bind(&e.note);
        });
        qb.build().execute(&mut *tx).await?;
    }

    tx.commit().await?;
    Ok(())
}
