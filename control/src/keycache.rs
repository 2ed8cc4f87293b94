//! A short-lived cache of verified API keys, so that an authenticated
//! request does not pay a database round trip for its key (issue 15: on
//! SQLite the lookup and the pool's ping were half of a GET's cost).
//!
//! What may be cached is what [`crate::auth`] reads for a key: its tenant,
//! user, scopes, expiry, the stored hash of its secret, the user's role in
//! the tenant and email. Every change to those (revocation, role change,
//! member removal, user or tenant deletion, key expiry edits) bumps one
//! `auth_generation` row through triggers in the same transaction
//! (migration 0032), so no code path can forget to invalidate. A replica
//! drops its whole cache when the generation moves:
//!
//! - every replica reads the row at most every [`CHECK_EVERY_MS`] before
//!   it answers from the cache (SQLite replicas share one file, so this
//!   is the only signal they have; a read of one row every 100 ms costs
//!   nothing next to thousands of requests a second);
//! - the replica that made a change (any request but GET, HEAD or
//!   OPTIONS, [`after_writes`]) reads it before its next cached answer, so
//!   the caller's next request there sees the change;
//! - on PostgreSQL the trigger also `NOTIFY`s `delta_auth`, and a
//!   listener per replica drops the cache as the change commits; the poll
//!   stays as the fallback for notifications lost while it reconnects.
//!
//! Redis is not used for this: it is optional and only carries rate
//! limits, while the database is always there and always sees the change.
//!
//! Dropping everything on any change is the simplest correct rule: such
//! changes are rare next to reads, and the next request of each key
//! refills its entry with one query. An entry read before a change but
//! stored after the cache saw it would be stale, so each lookup reads the
//! generation in the same statement as the key, and the entry is stored
//! only if that is still the cache's generation. Expiry is checked on
//! every use, since it needs no change to pass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::auth::Role;
use crate::db::{Db, now_ms};

/// A replica reads the generation at most this often (milliseconds): the
/// longest a change made on another SQLite replica can go unseen.
pub const CHECK_EVERY_MS: i64 = 100;
/// Entries are dropped this long after they were read, whatever the
/// generation says (a bound on any mistake, not the mechanism).
const MAX_AGE_MS: i64 = 60_000;
/// At most this many keys are cached (one arbitrary entry makes room).
const CAPACITY: usize = 10_000;
/// The channel migration 0032's PostgreSQL trigger notifies.
const CHANNEL: &str = "delta_auth";

/// A verified key, as read from the database.
#[derive(Debug, Clone)]
pub struct CachedKey {
    /// The key's id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The user it acts as.
    pub user_id: String,
    /// Hex SHA-256 of its secret part.
    pub secret_hash: String,
    /// Space-separated scopes.
    pub scopes: Vec<String>,
    /// Expiry, if any.
    pub expires_at_ms: Option<i64>,
    /// The user's role in the tenant.
    pub role: Role,
    /// The user's email (whether they are an operator is read from the
    /// configuration on each use).
    pub email: String,
    /// When `last_used_at_ms` was last recorded.
    pub last_used_at_ms: Option<i64>,
    /// When this was read.
    pub read_at_ms: i64,
}

/// The cache (one per replica, in [`crate::state::AppState`]).
#[derive(Debug)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, CachedKey>>,
    /// The generation the entries belong to (-1: unknown, nothing is
    /// cached until it has been read).
    generation: AtomicI64,
    /// When the generation was last read.
    checked_at_ms: AtomicI64,
    /// Counts [`KeyCache::check_next`] calls, so that a read of the
    /// generation that started before one does not count as a check.
    writes: AtomicU64,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicI64::new(-1),
            checked_at_ms: AtomicI64::new(i64::MIN),
            writes: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }
}

impl KeyCache {
    /// A cache on `db`; on PostgreSQL with a listener for `delta_auth`
    /// (`url` is the database's).
    pub fn open(db: &Db, url: &str) -> Arc<Self> {
        let cache = Arc::new(Self::default());
        if db.backend() == crate::db::Backend::Postgres {
            tokio::spawn(listen(Arc::downgrade(&cache), url.to_owned()));
        }
        cache
    }

    /// The entry for `prefix`, if the cache may answer: the generation was
    /// read within [`CHECK_EVERY_MS`] (read now otherwise) and the entry is
    /// younger than its maximum age.
    pub async fn get(&self, db: &Db, prefix: &str) -> Option<CachedKey> {
        let now = now_ms();
        if now.saturating_sub(self.checked_at_ms.load(Ordering::Acquire)) >= CHECK_EVERY_MS {
            self.refresh(db).await;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(prefix)
            .filter(|e| now.saturating_sub(e.read_at_ms) < MAX_AGE_MS)
            .cloned()
    }

    /// Store `key`, read at `generation` (the same statement as the key),
    /// unless the cache has moved on since (or not yet caught up).
    pub fn put(&self, prefix: &str, key: CachedKey, generation: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        // Under the lock: `clear` stores a new generation under it too.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY
            && !entries.contains_key(prefix)
            && let Some(victim) = entries.keys().next().cloned()
        {
            entries.remove(&victim);
        }
        entries.insert(prefix.to_owned(), key);
    }

    /// Make the next lookup read the generation first: called after every
    /// request that may have written, so that a change made through this
    /// replica holds for the caller's very next request here, without
    /// waiting for the period.
    pub fn check_next(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.checked_at_ms.store(i64::MIN, Ordering::Release);
    }

    /// Note that `last_used_at_ms` of `prefix` was recorded at `at`.
    pub fn used(&self, prefix: &str, at: i64) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.get_mut(prefix)
        {
            e.last_used_at_ms = Some(at);
        }
    }

    /// Drop every entry and adopt `generation`.
    fn clear(&self, generation: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
            self.generation.store(generation, Ordering::Release);
        }
    }

    /// Read the generation; drop everything if it moved (or could not be
    /// read: then nothing is cached until it can).
    async fn refresh(&self, db: &Db) {
        let _one = self.refreshing.lock().await;
        // Another request may have refreshed while this one waited.
        let started = now_ms();
        if started.saturating_sub(self.checked_at_ms.load(Ordering::Acquire)) < CHECK_EVERY_MS {
            return;
        }
        let writes = self.writes.load(Ordering::Acquire);
        match read_generation(db).await {
            Ok(g) => {
                if g != self.generation.load(Ordering::Acquire) {
                    self.clear(g);
                }
                // The time the read started: a change committed after it
                // is seen by the next check within the period. Unless a
                // write through this replica ended meanwhile: then the
                // next lookup reads again.
                if self.writes.load(Ordering::Acquire) == writes {
                    self.checked_at_ms.store(started, Ordering::Release);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the auth generation");
                self.clear(-1);
            }
        }
    }
}

/// Middleware: after a request that may have written (anything but GET,
/// HEAD and OPTIONS), and before its answer leaves, have the next lookup
/// read the generation (see [`KeyCache::check_next`]).
pub async fn after_writes(
    axum::extract::State(cache): axum::extract::State<Arc<KeyCache>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let reads_only = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(req).await;
    if !reads_only {
        cache.check_next();
    }
    response
}

/// The current `auth_generation`.
async fn read_generation(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT generation FROM auth_generation WHERE id = 1")
        .fetch_one(db.pool())
        .await
}

/// Drop `cache` whenever `delta_auth` is notified (PostgreSQL), until the
/// cache is gone. While the connection is lost notifications may be
/// missed: the cache is dropped on reconnect, and the poll covers the gap.
async fn listen(cache: Weak<KeyCache>, url: String) {
    use sqlx::postgres::PgListener;
    loop {
        let connected = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listening for auth changes; retrying");
                if cache.upgrade().is_none() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let next = listener.try_recv().await;
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match next {
                Ok(Some(note)) => {
                    let g = note.payload().parse().unwrap_or(-1);
                    cache.clear(g);
                    // A generation parsed from the notification is not a
                    // read of the row: the next request checks it.
                    cache.check_next();
                }
                // The connection was lost (try_recv reconnects on the
                // next call): anything notified meanwhile is gone.
                Ok(None) => {
                    cache.clear(-1);
                    cache.check_next();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "auth change listener failed; reconnecting");
                    cache.clear(-1);
                    cache.check_next();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> CachedKey {
        CachedKey {
            id: id.to_owned(),
            tenant_id: "t".into(),
            user_id: "u".into(),
            secret_hash: "h".into(),
            scopes: vec![],
            expires_at_ms: None,
            role: Role::Member,
            email: "e".into(),
            last_used_at_ms: None,
            read_at_ms: now_ms(),
        }
    }

    #[test]
    fn an_entry_read_at_an_older_generation_is_not_stored() {
        let cache = KeyCache::default();
        cache.clear(5);
        cache.put("a", key("a"), 4);
        cache.put("b", key("b"), 5);
        let entries = cache.entries.lock().expect("lock");
        assert!(!entries.contains_key("a"));
        assert!(entries.contains_key("b"));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::default();
        cache.clear(0);
        for i in 0..CAPACITY + 10 {
            cache.put(&i.to_string(), key("k"), 0);
        }
        assert_eq!(cache.entries.lock().expect("lock").len(), CAPACITY);
    }
}
