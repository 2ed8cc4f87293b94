//! The control plane's database: SQLite or PostgreSQL behind sqlx's `Any`
//! driver.
//!
//! Queries are written once in the dialect both accept: `$1` placeholders
//! (SQLite takes `$NNN` too), `BIGINT` milliseconds, JSON as `TEXT`,
//! booleans as `0`/`1` integers (the `Any` driver does not map SQLite's
//! booleans), `ON CONFLICT ... DO` upserts and `RETURNING`. Migrations are
//! kept per backend (`migrations/control/{sqlite,postgres}`) so that either
//! can diverge where it must.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

mod pool;

pub use pool::{PING_AFTER_IDLE, Pool};

/// How each SQLite connection is set up when it opens.
const SQLITE_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                            PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                            PRAGMA secure_delete = ON;";

/// Connections each pool keeps on SQLite: one writer at a time is SQLite's
/// model; a few readers in WAL mode, and busy_timeout for the writer queue.
const SQLITE_CONNECTIONS: u32 = 8;

/// Connections each pool keeps on PostgreSQL.
const POSTGRES_CONNECTIONS: u32 = 16;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (one file).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend behind a connection (for helpers handed a transaction
    /// rather than the [`Db`]).
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Self::Sqlite
        } else {
            Self::Postgres
        }
    }

    /// See [`Db::values_list`].
    pub fn values_list(self, rows: usize, cols: usize) -> String {
        let mut out = String::with_capacity(rows * cols * 6);
        for r in 0..rows {
            if r > 0 {
                out.push_str(", ");
            }
            out.push('(');
            out.push_str(&self.params_from(r * cols + 1, cols));
            out.push(')');
        }
        out
    }

    /// See [`Db::param_list`].
    pub fn param_list(self, n: usize) -> String {
        self.params_from(1, n)
    }

    fn params_from(self, first: usize, n: usize) -> String {
        let mut out = String::with_capacity(n * 6);
        for i in first..first + n {
            if i > first {
                out.push_str(", ");
            }
            match self {
                Self::Sqlite => out.push('?'),
                Self::Postgres => {
                    out.push('$');
                    out.push_str(&i.to_string());
                }
            }
        }
        out
    }
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("database_url must start with sqlite:// or postgres://, not {0:?}")]
    UnsupportedUrl(String),
    /// Connecting or querying failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A pool plus its backend.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
}

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/control/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/control/postgres");

impl Db {
    /// Connect to `url` and apply the migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            // Only the scheme: the rest may hold a password.
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(DbError::UnsupportedUrl(format!("{scheme}:...")));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                if let Some(dir) = sqlite_dir(url) {
                    let _ = std::fs::create_dir_all(dir);
                }
                let any = AnyPoolOptions::new()
                    .max_connections(SQLITE_CONNECTIONS)
                    // No ping before each use: a local file has no server
                    // that could have dropped the connection, and the ping
                    // was a round trip to the connection's worker thread
                    // per query (half of an authenticated GET's, issue 15).
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(SQLITE_SETUP).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await?;
                SQLITE.run(&any).await?;
                let max = SQLITE_CONNECTIONS as usize;
                Pool::new(any, options, backend, max)
            }
            Backend::Postgres => {
                // Transactions on this pool, single statements on as many
                // connections of the pool's own (`pool.rs`).
                let any = AnyPoolOptions::new()
                    .max_connections(POSTGRES_CONNECTIONS)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.clone())
                    .await?;
                POSTGRES.run(&any).await?;
                let max = POSTGRES_CONNECTIONS as usize;
                Pool::new(any, options, backend, max)
            }
        };
        Ok(Self { pool, backend })
    }

    /// The pool: single statements run on it as an executor.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Begin a transaction that writes. On SQLite it is `BEGIN IMMEDIATE`:
    /// the write lock is taken (waiting out the busy timeout) before the
    /// first statement, because a deferred transaction that reads first
    /// and then writes fails at once with `SQLITE_BUSY` when another
    /// connection is writing (SQLite cannot wait there without risking a
    /// deadlock). Found by the contract run: `PUT /v1/secrets/{name}`
    /// answered `busy` under concurrent requests.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Which backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Placeholders for a multi-row `VALUES` list of `rows` tuples of `cols`
    /// parameters, the statement's only parameters: `(?, ?), (?, ?)` on
    /// SQLite, `($1, $2), ($3, $4)` on PostgreSQL. SQLite gets anonymous
    /// parameters because sqlx looks up every parameter's name with
    /// `sqlite3_bind_parameter_name`, a linear walk over named ones: with
    /// `$N` names a 3,000-parameter statement spent more than half of its
    /// time there.
    pub fn values_list(&self, rows: usize, cols: usize) -> String {
        self.backend.values_list(rows, cols)
    }

    /// `n` placeholders separated by commas (the statement's only
    /// parameters), as [`Db::values_list`] numbers them.
    pub fn param_list(&self, n: usize) -> String {
        self.backend.param_list(n)
    }

    /// `SELECT 1`, for readiness.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The directory of a `sqlite://path` URL, so it can be created.
fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_owned())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The UTC date of `ms` (milliseconds since the epoch) as `YYYY-MM-DD`.
pub fn utc_day(ms: i64) -> String {
    let (y, m, d) = utc_date(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC month of `ms` as `YYYY-MM`: the budget period (seed 000).
pub fn utc_month(ms: i64) -> String {
    let (y, m, _) = utc_date(ms);
    format!("{y:04}-{m:02}")
}

fn utc_date(ms: i64) -> (i32, u8, u8) {
    let date = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    (date.year(), u8::from(date.month()), date.day())
}

/// A fresh id with a type prefix, e.g. `agt_0190...` (time-ordered).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[test]
    fn utc_days_and_months() {
        assert_eq!(utc_day(0), "1970-01-01");
        // 2026-11-23T23:59:59.999Z and the next millisecond.
        assert_eq!(utc_day(1_795_478_399_999), "2026-11-23");
        assert_eq!(utc_day(1_795_478_400_000), "2026-11-24");
        assert_eq!(utc_month(1_796_083_199_999), "2026-11");
        assert_eq!(utc_month(1_796_083_200_000), "2026-12");
        assert_eq!(utc_day(-1), "1969-12-31");
    }

    #[tokio::test]
    async fn sqlite_takes_dollar_placeholders_and_migrates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/sub/c.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.expect("connect");
        assert_eq!(db.backend(), Backend::Sqlite);
        assert_eq!(db.values_list(2, 2), "(?, ?), (?, ?)");
        assert_eq!(db.param_list(3), "?, ?, ?");
        let pg = Db {
            pool: db.pool.clone(),
            backend: Backend::Postgres,
        };
        assert_eq!(pg.values_list(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(pg.param_list(2), "$1, $2");
        sqlx::query("INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)")
            .bind("t1")
            .bind("One")
            .bind(5_i64)
            .execute(db.pool())
            .await
            .expect("insert");
        let row = sqlx::query("SELECT name, created_at_ms FROM tenants WHERE id = $1")
            .bind("t1")
            .fetch_one(db.pool())
            .await
            .expect("select");
        assert_eq!(row.get::<String, _>("name"), "One");
        assert_eq!(row.get::<i64, _>("created_at_ms"), 5);
        // Reconnecting does not re-run migrations.
        drop(db);
        Db::connect(&url)
            .await
            .expect("reconnect")
            .ping()
            .await
            .expect("ping");
        let refused = Db::connect("mysql://user:hunter2@db.example/x").await;
        assert!(matches!(refused, Err(DbError::UnsupportedUrl(_))));
        let message = refused
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!message.contains("hunter2"), "{message}");
    }
}
