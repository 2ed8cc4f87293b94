//! The pool single statements use (`delta_control::db::Pool`) on
//! PostgreSQL, where it pings no connection on the way back: a connection
//! the server closed while it sat idle is replaced before a statement uses
//! it, and one a statement finds broken is closed, not used again.

use delta_control::db::{Db, PING_AFTER_IDLE};

use super::*;

async fn backend_pid(db: &Db) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(db.pool())
        .await
}

/// The server ends backend `pid`'s session, as a restart would, and the
/// backend is gone when this returns.
async fn terminate(db: &Db, pid: i32) {
    let mut conn = db.pool().acquire().await.expect("connection");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(pid)
        .fetch_one(&mut *conn)
        .await
        .expect("terminate");
    assert!(ended, "backend {pid} was not ended");
}

#[tokio::test]
async fn postgres_connections_broken_idle_or_in_use_are_replaced() {
    let pg = common::fresh_postgres_database().await;
    let db = Db::connect(&pg.url).await.expect("connect");
    let first = backend_pid(&db).await.expect("pid");
    assert_eq!(
        backend_pid(&db).await.expect("pid"),
        first,
        "the connection is reused"
    );
    assert_eq!(db.pool().idle_connections(), 1);

    // Broken while idle for longer than the ping threshold: the ping finds
    // out and the statement runs on a new connection.
    terminate(&db, first).await;
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
    let second = backend_pid(&db)
        .await
        .expect("a statement after its idle connection was closed by the server");
    assert_ne!(second, first);

    // Broken between two statements with no time to ping: the statement
    // that finds out fails, and its connection is closed, not kept.
    terminate(&db, second).await;
    let failed = backend_pid(&db).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        db.pool().idle_connections(),
        0,
        "a broken connection was kept"
    );
    let third = backend_pid(&db).await.expect("the next statement");
    assert_ne!(third, second);
    assert_eq!(db.pool().idle_connections(), 1);
}

/// A statement that sends a row and then fails answers its own error, and
/// the connection's next statement answers its own result (PostgreSQL
/// sends the error after the first row; a reader that stopped at that row
/// left the error for whoever used the connection next).
#[tokio::test]
async fn postgres_an_error_after_the_first_row_is_the_statement_s_own() {
    let pg = common::fresh_postgres_database().await;
    let db = Db::connect(&pg.url).await.expect("connect");
    let first = backend_pid(&db).await.expect("pid");
    let failed: Result<Option<i32>, _> =
        sqlx::query_scalar("SELECT 1 / (x - 2) FROM generate_series(1, 3) AS x")
            .fetch_optional(db.pool())
            .await;
    match failed {
        Err(sqlx::Error::Database(e)) => assert_eq!(e.code().as_deref(), Some("22012"), "{e}"),
        other => panic!("the division by zero was not this statement's answer: {other:?}"),
    }
    assert_eq!(
        backend_pid(&db).await.expect("the next statement"),
        first,
        "the same connection, answering its own statement"
    );
}
