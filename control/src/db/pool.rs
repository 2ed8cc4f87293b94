//! The pool every single statement goes through ([`Pool`]), with SQLite's
//! statements run on connections kept apart from sqlx's pool.
//!
//! Why: sqlx 0.8.6 pings every connection its pool takes back
//! (`PoolConnection::return_to_pool`), whatever the pool's options say. On
//! SQLite that ping is a spawned task plus a round trip to the connection's
//! worker thread, about a tenth of an authenticated GET's CPU (issue 15,
//! benches/README.md). A single statement that ran to its end leaves
//! nothing behind to flush, so here it hands its connection straight back.
//! A statement whose future was dropped before it finished (its client went
//! away) may have left the connection mid-command: that connection is
//! closed, never reused.
//!
//! Transactions, [`Pool::acquire`] and everything on PostgreSQL stay on
//! sqlx's pool: a transaction may be dropped with work to roll back, and on
//! PostgreSQL the ping before each use is what notices a restarted server.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, TryStreamExt};
use sqlx::any::{Any, AnyConnectOptions, AnyQueryResult, AnyRow, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Describe, Either, Error, Execute, Executor};
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a statement waits for a connection before it fails with
/// [`Error::PoolTimedOut`] (sqlx's pool default).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// sqlx's pool plus, on SQLite, the connections single statements use.
#[derive(Clone)]
pub struct Pool {
    any: AnyPool,
    spare: Option<Arc<Spare>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("any", &self.any)
            .field("own_sqlite_connections", &self.spare.is_some())
            .finish()
    }
}

impl Pool {
    /// Every statement through `any`.
    pub(super) fn shared(any: AnyPool) -> Self {
        Self { any, spare: None }
    }

    /// Transactions through `any`; single statements on up to `max` SQLite
    /// connections of `options`, each set up with `setup` when it opens.
    pub(super) fn sqlite(
        any: AnyPool,
        options: AnyConnectOptions,
        setup: &'static str,
        max: usize,
    ) -> Self {
        let spare = Spare {
            options,
            setup,
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: Semaphore::new(max),
        };
        Self {
            any,
            spare: Some(Arc::new(spare)),
        }
    }

    /// sqlx's pool, for what takes one (migrations, the KV store).
    pub fn any(&self) -> &AnyPool {
        &self.any
    }

    /// A connection from sqlx's pool, for several statements in a row.
    pub async fn acquire(&self) -> Result<PoolConnection<Any>, Error> {
        self.any.acquire().await
    }

    /// A transaction on sqlx's pool (`BEGIN`).
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, Any>, Error> {
        self.any.begin().await
    }

    /// A transaction on sqlx's pool opened with `statement`.
    pub async fn begin_with(
        &self,
        statement: &'static str,
    ) -> Result<sqlx::Transaction<'static, Any>, Error> {
        self.any.begin_with(statement).await
    }

    /// The options the pool connects with.
    pub fn connect_options(&self) -> Arc<AnyConnectOptions> {
        self.any.connect_options()
    }

    /// How many connections single statements hold open now, idle or in
    /// use (`None` when they share sqlx's pool). For tests.
    #[doc(hidden)]
    pub fn own_connections(&self) -> Option<usize> {
        self.spare.as_ref().map(|spare| spare.idle().len())
    }
}

/// SQLite connections for single statements.
struct Spare {
    options: AnyConnectOptions,
    setup: &'static str,
    idle: Mutex<Vec<AnyConnection>>,
    permits: Semaphore,
}

impl Spare {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<AnyConnection>> {
        // A panic while the list was held cannot leave it half-changed
        // (push and pop only), so a poisoned lock is still a sound list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn lease(&self) -> Result<Lease<'_>, Error> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| Error::PoolTimedOut)?
            .map_err(|_| Error::PoolClosed)?;
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let mut conn = self.options.connect().await?;
                conn.execute(self.setup).await?;
                conn
            }
        };
        Ok(Lease {
            spare: self,
            conn: Some(conn),
            reusable: false,
            _permit: permit,
        })
    }
}

/// A connection out of [`Spare`] for one statement. Dropped, it goes back
/// if the statement finished and is closed otherwise.
struct Lease<'a> {
    spare: &'a Spare,
    conn: Option<AnyConnection>,
    reusable: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut AnyConnection {
        // Only `drop` takes the connection out.
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// The statement came back with `result`: an answer or the database's
    /// refusal leave the connection ready for the next statement; anything
    /// else (I/O, a crashed worker) may not have.
    fn finished<T>(&mut self, result: &Result<T, Error>) {
        self.reusable = matches!(result, Ok(_) | Err(Error::Database(_)));
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable {
                self.spare.idle().push(conn);
            }
            // Otherwise dropping it closes it; its worker thread ends once
            // any command it was running is done.
        }
    }
}

impl<'p> Executor<'p> for &'p Pool {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let Some(spare) = &self.spare else {
            return self.any.fetch_many(query);
        };
        // The rows are collected before they are handed on: a stream that
        // owned its lease and also borrowed its connection would refer to
        // itself. The control plane reads no result set it would rather
        // stream (no `fetch` on the pool), so nothing is held longer.
        let all = async move {
            let mut lease = spare.lease().await?;
            let result: Result<Vec<_>, Error> = lease.conn().fetch_many(query).try_collect().await;
            lease.finished(&result);
            result
        };
        Box::pin(
            stream::once(all)
                .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
                .try_flatten(),
        )
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let Some(spare) = &self.spare else {
            return self.any.fetch_optional(query);
        };
        Box::pin(async move {
            let mut lease = spare.lease().await?;
            let result = lease.conn().fetch_optional(query).await;
            lease.finished(&result);
            result
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<<Any as sqlx::Database>::Statement<'q>, Error>>
    where
        'p: 'e,
    {
        self.any.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, Error>>
    where
        'p: 'e,
    {
        self.any.describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Row;

    use crate::db::Db;

    async fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/p.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.expect("connect");
        (dir, db)
    }

    fn insert(id: &str) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, 'T', 1)").bind(id)
    }

    #[tokio::test]
    async fn finished_statements_and_refusals_hand_their_connection_back() {
        let (_dir, db) = sqlite().await;
        for i in 0..20 {
            insert(&format!("t{i}"))
                .execute(db.pool())
                .await
                .expect("insert");
        }
        let refused = insert("t0")
            .execute(db.pool())
            .await
            .expect_err("duplicate id");
        assert!(matches!(refused, sqlx::Error::Database(_)), "{refused:?}");
        let rows = sqlx::query("SELECT id FROM tenants ORDER BY id")
            .fetch_all(db.pool())
            .await
            .expect("rows");
        assert_eq!(rows.len(), 20);
        assert_eq!(rows[0].get::<String, _>("id"), "t0");
        // One after another, all of that ran on one connection.
        assert_eq!(db.pool().own_connections(), Some(1));
    }

    #[tokio::test]
    async fn concurrent_statements_open_no_more_than_the_limit() {
        let (_dir, db) = sqlite().await;
        let reads = (0..64).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                sqlx::query("SELECT count(*) AS n FROM tenants")
                    .fetch_one(db.pool())
                    .await
                    .map(|row| row.get::<i64, _>("n"))
            })
        });
        for read in futures_util::future::join_all(reads).await {
            assert_eq!(read.expect("task").expect("read"), 0);
        }
        let open = db.pool().own_connections().expect("own connections");
        assert!(
            (1..=super::super::SQLITE_CONNECTIONS as usize).contains(&open),
            "{open}"
        );
    }

    #[tokio::test]
    async fn a_statement_dropped_midway_closes_its_connection() {
        let (_dir, db) = sqlite().await;
        insert("before").execute(db.pool()).await.expect("insert");
        assert_eq!(db.pool().own_connections(), Some(1));
        // A writer holds the lock, so the next insert waits in SQLite's busy
        // handler; its caller gives up on it there.
        let mut tx = db.begin().await.expect("begin");
        insert("held")
            .execute(&mut *tx)
            .await
            .expect("insert in tx");
        let waited = tokio::time::timeout(
            Duration::from_millis(200),
            insert("dropped").execute(db.pool()),
        )
        .await;
        assert!(
            waited.is_err(),
            "the insert should still be waiting: {waited:?}"
        );
        assert_eq!(
            db.pool().own_connections(),
            Some(0),
            "a connection left mid-statement must not be reused"
        );
        tx.commit().await.expect("commit");
        // The next statement opens a fresh connection and works.
        insert("after")
            .execute(db.pool())
            .await
            .expect("insert after");
        assert_eq!(db.pool().own_connections(), Some(1));
        let ids: Vec<String> = sqlx::query("SELECT id FROM tenants ORDER BY id")
            .fetch_all(db.pool())
            .await
            .expect("rows")
            .iter()
            .map(|row| row.get("id"))
            .collect();
        // The dropped insert either never ran or ran once after the lock was
        // released; it is never run twice and loses nothing else.
        assert!(
            ids == ["after", "before", "held"] || ids == ["after", "before", "dropped", "held"],
            "{ids:?}"
        );
    }
}
