//! The pool every single statement goes through ([`Pool`]): connections
//! kept apart from sqlx's pool, handed back without a ping.
//!
//! Why: sqlx 0.8.6 pings every connection its pool takes back
//! (`PoolConnection::return_to_pool`), whatever the pool's options say, and
//! on PostgreSQL also before each use. On SQLite a ping is a spawned task
//! plus a round trip to the connection's worker thread, about a tenth of an
//! authenticated GET's CPU; on PostgreSQL each is a round trip to the
//! server, so one statement held its connection for three (issue 15,
//! benches/README.md). A single statement that ran to its end leaves
//! nothing behind to flush, so here it hands its connection straight back.
//! A statement whose future was dropped before it finished (its client went
//! away) may have left the connection mid-command, and one that failed
//! other than by the database's refusal may have lost it: such a connection
//! is closed, never reused. On PostgreSQL a connection idle for more than
//! [`PING_AFTER_IDLE`] is pinged before use, so that a restarted server
//! costs no request; a busy connection was proven live by its last use.
//!
//! Transactions and [`Pool::acquire`] stay on sqlx's pool: a transaction may
//! be dropped with work to roll back, which its release ping flushes.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, TryStreamExt};
use sqlx::any::{Any, AnyConnectOptions, AnyQueryResult, AnyRow, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{
    AnyConnection, AnyPool, ConnectOptions, Connection, Describe, Either, Error, Execute, Executor,
};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{Backend, SQLITE_SETUP};

/// How long a statement waits for a connection (a permit, the ping of an
/// idle one, or opening a new one) before it fails with
/// [`Error::PoolTimedOut`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// On PostgreSQL, a connection idle longer than this is pinged before use.
/// A server restart takes longer, so every connection it broke is found
/// before a statement is lost to it.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How long that ping may take before the connection counts as broken.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection idle longer than this is closed when the pool is next used
/// (sqlx's idle timeout), so that a burst's connections do not stay open.
const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(600);

/// sqlx's pool plus the connections single statements use.
#[derive(Clone)]
pub struct Pool {
    any: AnyPool,
    spare: Arc<Spare>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("any", &self.any)
            .field("backend", &self.spare.backend)
            .finish()
    }
}

impl Pool {
    /// Transactions through `any`; single statements on up to `max`
    /// connections of `options` to `backend`, which decides how they are
    /// set up and checked ([`Spare`]).
    pub(super) fn new(
        any: AnyPool,
        options: AnyConnectOptions,
        backend: Backend,
        max: usize,
    ) -> Self {
        let spare = Spare {
            options,
            backend,
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: Semaphore::new(max),
        };
        Self {
            any,
            spare: Arc::new(spare),
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

    /// How many idle connections single statements keep. For tests.
    #[doc(hidden)]
    pub fn idle_connections(&self) -> usize {
        self.spare.idle().len()
    }
}

/// Connections for single statements.
struct Spare {
    options: AnyConnectOptions,
    /// SQLite: each connection opens with [`SQLITE_SETUP`]. PostgreSQL: a
    /// connection idle over [`PING_AFTER_IDLE`] is pinged before use, and a
    /// `fetch_optional` reads its results to the end ([`first_row`]);
    /// SQLite's worker resets the statement after the first row itself.
    backend: Backend,
    /// Idle connections with when each was last handed back, oldest first.
    idle: Mutex<Vec<(AnyConnection, Instant)>>,
    permits: Semaphore,
}

impl Spare {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(AnyConnection, Instant)>> {
        // A panic while the list was held cannot leave it half-changed
        // (push and pop only), so a poisoned lock is still a sound list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn connect(&self) -> Result<AnyConnection, Error> {
        let mut conn = self.options.connect().await?;
        if self.backend == Backend::Sqlite {
            conn.execute(SQLITE_SETUP).await?;
        }
        Ok(conn)
    }

    /// A connection for one statement, within [`ACQUIRE_TIMEOUT`] in all:
    /// waiting for a permit, pinging an idle connection and opening a new
    /// one (a server that accepts but never answers must not hang it).
    async fn lease(&self) -> Result<Lease<'_>, Error> {
        tokio::time::timeout(ACQUIRE_TIMEOUT, self.lease_within())
            .await
            .map_err(|_| Error::PoolTimedOut)?
    }

    async fn lease_within(&self) -> Result<Lease<'_>, Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::PoolClosed)?;
        let (idle, stale) = {
            let mut idle = self.idle();
            let stale = match idle.first() {
                Some((_, since)) if since.elapsed() > CLOSE_AFTER_IDLE => Some(idle.remove(0)),
                _ => None,
            };
            (idle.pop(), stale)
        };
        // Closed outside the lock (dropping a connection shuts it).
        drop(stale);
        let conn = match idle {
            Some((mut conn, since)) => match self.backend {
                Backend::Postgres if since.elapsed() > PING_AFTER_IDLE => {
                    match tokio::time::timeout(PING_TIMEOUT, conn.ping()).await {
                        Ok(Ok(())) => conn,
                        // Broken while idle (a restarted server), or a server
                        // that does not answer: a new connection.
                        Ok(Err(_)) | Err(_) => self.connect().await?,
                    }
                }
                _ => conn,
            },
            None => self.connect().await?,
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
    /// else (I/O, a crashed worker), or PostgreSQL's refusals that end the
    /// session (severity FATAL or PANIC; class 08, connection exceptions;
    /// 57P, the server shutting the backend down), may not have.
    fn finished<T>(&mut self, result: &Result<T, Error>) {
        self.reusable = match result {
            Ok(_) => true,
            Err(Error::Database(e)) => {
                let fatal = e
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some_and(|pg| {
                        matches!(
                            pg.severity(),
                            sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                        )
                    });
                let code = e.code();
                let code = code.as_deref().unwrap_or_default();
                !(fatal || code.starts_with("08") || code.starts_with("57P"))
            }
            Err(_) => false,
        };
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // A connection not handed back is dropped here, which closes it; its
        // worker thread ends once any command it was running is done.
        if let Some(conn) = self.conn.take()
            && self.reusable
        {
            self.spare.idle().push((conn, Instant::now()));
        }
    }
}

/// The first row of a statement's results, reading them to the end: an
/// error after the first row is the statement's. (On PostgreSQL the `Any`
/// driver's `fetch_optional` stops at the first row and answers `Ok`, and
/// the error would reach the connection's next statement instead.)
async fn first_row(
    mut results: BoxStream<'_, Result<Either<AnyQueryResult, AnyRow>, Error>>,
) -> Result<Option<AnyRow>, Error> {
    let mut first = None;
    while let Some(item) = results.try_next().await? {
        if let Either::Right(row) = item
            && first.is_none()
        {
            first = Some(row);
        }
    }
    Ok(first)
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
        let spare = &*self.spare;
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
        let spare = &*self.spare;
        Box::pin(async move {
            let mut lease = spare.lease().await?;
            let result = if spare.backend == Backend::Postgres {
                first_row(lease.conn().fetch_many(query)).await
            } else {
                lease.conn().fetch_optional(query).await
            };
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
        assert_eq!(db.pool().idle_connections(), 1);
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
        let open = db.pool().idle_connections();
        assert!(
            (1..=super::super::SQLITE_CONNECTIONS as usize).contains(&open),
            "{open}"
        );
    }

    #[tokio::test]
    async fn a_statement_dropped_midway_closes_its_connection() {
        let (_dir, db) = sqlite().await;
        insert("before").execute(db.pool()).await.expect("insert");
        assert_eq!(db.pool().idle_connections(), 1);
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
            db.pool().idle_connections(),
            0,
            "a connection left mid-statement must not be reused"
        );
        tx.commit().await.expect("commit");
        // The next statement opens a fresh connection and works.
        insert("after")
            .execute(db.pool())
            .await
            .expect("insert after");
        assert_eq!(db.pool().idle_connections(), 1);
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
