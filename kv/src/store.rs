//! The store: two tables (`kv_entries`, `kv_usage`) behind sqlx's `Any`
//! driver, in SQL that SQLite and PostgreSQL both accept (`$N`
//! placeholders, `ON CONFLICT ... DO`, `RETURNING`, `substr`, `length` of a
//! blob in bytes). The control plane's migrations create the tables in its
//! database (PostgreSQL with `COLLATE "C"` keys, so that keys sort by bytes
//! as on SQLite); [`KvStore::open_sqlite`] creates them in a node's own file.
//!
//! Every statement names the tenant and the agent: nothing here can read
//! another agent's entries, whatever the key.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

use crate::{Entry, KeyInfo, KvError, KvLimits, Page, Usage, page_size};

/// The tables of a node's own file (the control plane's are its
/// migrations' `0028_kv.sql`).
const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv_usage (
    agent_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv_entries (
    agent_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (agent_id, key)
);";

/// Agents' key-value state in one database.
#[derive(Debug, Clone)]
pub struct KvStore {
    pool: AnyPool,
    limits: KvLimits,
}

fn unavailable(e: sqlx::Error) -> KvError {
    // The account goes to the operator's log; the guest gets a short one.
    tracing::warn!(error = %e, "kv store");
    KvError::Unavailable("the state store did not answer".into())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl KvStore {
    /// A store on `pool`, whose database already has the tables (the
    /// control plane's migrations).
    pub fn new(pool: AnyPool, limits: KvLimits) -> Self {
        Self { pool, limits }
    }

    /// A store in the SQLite file `path` (created with its tables if
    /// missing): a node's state when it has no control plane. WAL with
    /// `synchronous=FULL`, as the node's own store: a write the guest was
    /// told about survives a power loss.
    pub async fn open_sqlite(path: &Path, limits: KvLimits) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(AnyConnectOptions::from_str(&url)?)
            .await?;
        pool.execute(SQLITE_SCHEMA).await?;
        Ok(Self { pool, limits })
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// The entry under `key` of `agent_id` (of `tenant_id`).
    pub async fn get(
        &self,
        tenant_id: &str,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<Entry>, KvError> {
        self.limits.check_key(key)?;
        let row = sqlx::query(
            "SELECT value, version, updated_at_ms FROM kv_entries \
             WHERE agent_id = $1 AND tenant_id = $2 AND key = $3",
        )
        .bind(agent_id)
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|row| {
            Ok(Entry {
                key: key.to_owned(),
                value: row.try_get("value").map_err(unavailable)?,
                version: to_u64(row.try_get("version").map_err(unavailable)?),
                updated_at_ms: row.try_get("updated_at_ms").map_err(unavailable)?,
            })
        })
        .transpose()
    }

    /// Store `value` under `key`; with `expected`, only if the current
    /// version is that (0: only if absent). Answers the new version.
    pub async fn set(
        &self,
        tenant_id: &str,
        agent_id: &str,
        key: &str,
        value: &[u8],
        expected: Option<u64>,
    ) -> Result<u64, KvError> {
        self.limits.check_key(key)?;
        self.limits.check_value(value.len())?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let usage = lock_usage(&mut tx, tenant_id, agent_id).await?;
        let current = sqlx::query(
            "SELECT version, CAST(length(value) AS BIGINT) AS size FROM kv_entries \
             WHERE agent_id = $1 AND tenant_id = $2 AND key = $3",
        )
        .bind(agent_id)
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let (current_version, old_bytes) = match &current {
            Some(row) => (
                to_u64(row.try_get("version").map_err(unavailable)?),
                key.len() as u64 + to_u64(row.try_get("size").map_err(unavailable)?),
            ),
            None => (0, 0),
        };
        if let Some(expected) = expected
            && expected != current_version
        {
            return Err(KvError::Conflict {
                current: current_version,
            });
        }
        let keys = usage.keys + u64::from(current.is_none());
        let bytes =
            (usage.bytes - old_bytes.min(usage.bytes)) + key.len() as u64 + value.len() as u64;
        if current.is_none() && keys > self.limits.max_keys {
            return Err(KvError::QuotaExceeded(format!(
                "at most {} keys per agent",
                self.limits.max_keys
            )));
        }
        if bytes > self.limits.max_total_bytes && bytes > usage.bytes {
            return Err(KvError::QuotaExceeded(format!(
                "at most {} bytes per agent (keys plus values); {} in use",
                self.limits.max_total_bytes, usage.bytes
            )));
        }
        let version = usage.seq + 1;
        sqlx::query(
            "INSERT INTO kv_entries (agent_id, tenant_id, key, value, version, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (agent_id, key) DO UPDATE SET value = excluded.value, \
                 version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(agent_id)
        .bind(tenant_id)
        .bind(key)
        .bind(value.to_vec())
        .bind(to_i64(version))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        save_usage(&mut tx, agent_id, keys, bytes, version).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(version)
    }

    /// Remove `key`; answers whether it existed.
    pub async fn delete(
        &self,
        tenant_id: &str,
        agent_id: &str,
        key: &str,
    ) -> Result<bool, KvError> {
        self.limits.check_key(key)?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let usage = lock_usage(&mut tx, tenant_id, agent_id).await?;
        let gone = sqlx::query(
            "DELETE FROM kv_entries WHERE agent_id = $1 AND tenant_id = $2 AND key = $3 \
             RETURNING CAST(length(value) AS BIGINT) AS size",
        )
        .bind(agent_id)
        .bind(tenant_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(row) = gone else {
            // Nothing changed: the usage row's no-op write is rolled back.
            return Ok(false);
        };
        let freed = key.len() as u64 + to_u64(row.try_get("size").map_err(unavailable)?);
        save_usage(
            &mut tx,
            agent_id,
            usage.keys.saturating_sub(1),
            usage.bytes.saturating_sub(freed),
            usage.seq,
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    /// Keys starting with `prefix`, after `after` (exclusive), `limit` of
    /// them at most (see [`page_size`]).
    pub async fn list(
        &self,
        tenant_id: &str,
        agent_id: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, KvError> {
        self.limits.check_prefix(prefix)?;
        if let Some(after) = after {
            self.limits.check_key(after)?;
        }
        let limit = page_size(limit);
        // `substr` counts characters on both databases; keys sort by bytes
        // (SQLite's BINARY collation, PostgreSQL's "C").
        let rows = sqlx::query(
            "SELECT key, version, CAST(length(value) AS BIGINT) AS size, updated_at_ms FROM kv_entries \
             WHERE agent_id = $1 AND tenant_id = $2 AND key > $3 \
               AND substr(key, 1, CAST($4 AS INTEGER)) = $5 \
             ORDER BY key LIMIT $6",
        )
        .bind(agent_id)
        .bind(tenant_id)
        .bind(after.unwrap_or(""))
        .bind(prefix.chars().count() as i64)
        .bind(prefix)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(KeyInfo {
                key: row.try_get("key").map_err(unavailable)?,
                version: to_u64(row.try_get("version").map_err(unavailable)?),
                size: to_u64(row.try_get("size").map_err(unavailable)?),
                updated_at_ms: row.try_get("updated_at_ms").map_err(unavailable)?,
            });
        }
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = if more {
            items.last().map(|k| k.key.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// What `agent_id`'s state takes now.
    pub async fn usage(&self, tenant_id: &str, agent_id: &str) -> Result<Usage, KvError> {
        let row =
            sqlx::query("SELECT keys, bytes FROM kv_usage WHERE agent_id = $1 AND tenant_id = $2")
                .bind(agent_id)
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(match row {
            Some(row) => Usage {
                keys: to_u64(row.try_get("keys").map_err(unavailable)?),
                bytes: to_u64(row.try_get("bytes").map_err(unavailable)?),
            },
            None => Usage::default(),
        })
    }
}

struct Locked {
    keys: u64,
    bytes: u64,
    seq: u64,
}

/// Write the agent's usage row first (creating it if missing): from here
/// on, the transaction holds the agent's writes (PostgreSQL's row lock,
/// SQLite's write lock taken before any read, so it waits in the busy
/// handler instead of failing on a stale snapshot).
async fn lock_usage(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    agent_id: &str,
) -> Result<Locked, KvError> {
    let row = sqlx::query(
        "INSERT INTO kv_usage (agent_id, tenant_id, keys, bytes, seq) VALUES ($1, $2, 0, 0, 0) \
         ON CONFLICT (agent_id) DO UPDATE SET seq = kv_usage.seq \
         RETURNING tenant_id, keys, bytes, seq",
    )
    .bind(agent_id)
    .bind(tenant_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(unavailable)?;
    let owner: String = row.try_get("tenant_id").map_err(unavailable)?;
    if owner != tenant_id {
        // Agent ids are global: another tenant's agent is simply not ours.
        return Err(KvError::NotAllowed);
    }
    Ok(Locked {
        keys: to_u64(row.try_get("keys").map_err(unavailable)?),
        bytes: to_u64(row.try_get("bytes").map_err(unavailable)?),
        seq: to_u64(row.try_get("seq").map_err(unavailable)?),
    })
}

async fn save_usage(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agent_id: &str,
    keys: u64,
    bytes: u64,
    seq: u64,
) -> Result<(), KvError> {
    sqlx::query("UPDATE kv_usage SET keys = $1, bytes = $2, seq = $3 WHERE agent_id = $4")
        .bind(to_i64(keys))
        .bind(to_i64(bytes))
        .bind(to_i64(seq))
        .bind(agent_id)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn store(limits: KvLimits) -> (tempfile::TempDir, KvStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KvStore::open_sqlite(&dir.path().join("kv.db"), limits)
            .await
            .expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn versions_grow_and_are_never_reused_and_tenants_are_apart() {
        let (_dir, kv) = store(KvLimits::default()).await;
        let v1 = kv.set("t1", "a1", "k", b"one", None).await.expect("set");
        let v2 = kv
            .set("t1", "a1", "k", b"two", Some(v1))
            .await
            .expect("cas");
        assert!(v2 > v1);
        assert_eq!(
            kv.set("t1", "a1", "k", b"x", Some(v1)).await,
            Err(KvError::Conflict { current: v2 })
        );
        let got = kv.get("t1", "a1", "k").await.expect("get").expect("entry");
        assert_eq!((got.value.as_slice(), got.version), (&b"two"[..], v2));
        assert!(kv.delete("t1", "a1", "k").await.expect("delete"));
        assert!(!kv.delete("t1", "a1", "k").await.expect("delete again"));
        // Re-created: a version past every earlier one, so a swap based on
        // the old read fails.
        assert_eq!(
            kv.set("t1", "a1", "k", b"x", Some(v2)).await,
            Err(KvError::Conflict { current: 0 })
        );
        let v3 = kv
            .set("t1", "a1", "k", b"three", Some(0))
            .await
            .expect("create");
        assert!(v3 > v2);
        // Another tenant naming the same agent id sees nothing and may not
        // write into it.
        assert_eq!(kv.get("t2", "a1", "k").await, Ok(None));
        assert_eq!(
            kv.set("t2", "a1", "k", b"evil", None).await,
            Err(KvError::NotAllowed)
        );
        assert_eq!(
            kv.list("t2", "a1", "", None, 0)
                .await
                .map(|p| p.items.len()),
            Ok(0)
        );
    }

    #[tokio::test]
    async fn prefixes_page_in_byte_order() {
        let (_dir, kv) = store(KvLimits::default()).await;
        for key in ["b/2", "a/1", "b/1", "b/10", "c", "b/é", "b"] {
            kv.set("t", "a", key, key.as_bytes(), None)
                .await
                .expect("set");
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = kv
                .list("t", "a", "b/", after.as_deref(), 2)
                .await
                .expect("list");
            seen.extend(page.items.iter().map(|k| k.key.clone()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["b/1", "b/10", "b/2", "b/é"]);
        let all = kv.list("t", "a", "", None, 0).await.expect("list");
        assert_eq!(all.items.len(), 7);
        assert_eq!(all.items[0].size, 3);
    }

    #[tokio::test]
    async fn the_quota_of_keys_and_bytes_holds() {
        let limits = KvLimits {
            max_keys: 3,
            max_total_bytes: 100,
            max_value_bytes: 60,
            ..KvLimits::default()
        };
        let (_dir, kv) = store(limits).await;
        for k in ["a", "b", "c"] {
            kv.set("t", "x", k, b"1", None).await.expect("within");
        }
        assert!(matches!(
            kv.set("t", "x", "d", b"1", None).await,
            Err(KvError::QuotaExceeded(_))
        ));
        // Replacing an existing key is not a new key.
        kv.set("t", "x", "a", &[0; 50], None)
            .await
            .expect("replace");
        assert!(matches!(
            kv.set("t", "x", "b", &[0; 50], None).await,
            Err(KvError::QuotaExceeded(_))
        ));
        assert_eq!(
            kv.set("t", "x", "b", &[0; 61], None).await,
            Err(KvError::TooLarge { limit: 60 })
        );
        assert_eq!(kv.usage("t", "x").await, Ok(Usage { keys: 3, bytes: 55 }));
        kv.delete("t", "x", "a").await.expect("delete");
        assert_eq!(kv.usage("t", "x").await, Ok(Usage { keys: 2, bytes: 4 }));
        kv.set("t", "x", "d", &[0; 50], None)
            .await
            .expect("room again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_swaps_lose_no_update() {
        let (_dir, kv) = store(KvLimits::default()).await;
        let kv = Arc::new(kv);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let kv = Arc::clone(&kv);
            tasks.push(tokio::spawn(async move {
                loop {
                    let current = kv.get("t", "a", "n").await.expect("get");
                    let (n, version) = current.map_or((0, 0), |e| {
                        (
                            String::from_utf8_lossy(&e.value)
                                .parse::<u64>()
                                .unwrap_or(0),
                            e.version,
                        )
                    });
                    match kv
                        .set("t", "a", "n", (n + 1).to_string().as_bytes(), Some(version))
                        .await
                    {
                        Ok(_) => return,
                        Err(KvError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let n = kv.get("t", "a", "n").await.expect("get").expect("entry");
        assert_eq!(n.value, b"20");
    }
}
