//! The token ledger of a node that has a control plane: spending against
//! budget leases.
//!
//! The control plane is the budget authority (issue 7). A node does not own
//! balances; it takes short **leases** (a slice of an agent's budget with an
//! expiry) through `POST /v1/nodes/leases`, spends against them locally and
//! returns them with the amount spent (`POST /v1/nodes/leases/{id}/return`).
//! [`LeaseLedger`] implements [`BudgetLedger`] that way:
//!
//! - `reserve(n)` holds `n` tokens of one of the agent's leases that has room
//!   and is not near its expiry; otherwise it leases `max(n, lease_chunk)`
//!   with `min_amount = n` (the control plane grants what is available, at
//!   least `n`, or answers 409, which is [`LedgerError::Insufficient`]). One
//!   acquisition per agent is in flight at a time, so a burst of calls shares
//!   one new lease instead of draining the budget into many; the agent's
//!   bookkeeping is a plain mutex never held across a network call, and
//!   agents do not wait for each other.
//! - `settle(used)` charges `used` against the lease and gives the rest of
//!   the hold back to the lease's room; usage beyond the hold takes only room
//!   nobody holds, and what even that cannot cover is `uncovered` (reported
//!   at return, where the control plane charges it if the budget allows).
//!   `release` gives the whole hold back.
//! - A lease is returned, with its spent total, once it has no open
//!   reservations and has been idle for `lease_idle_secs`, is within the
//!   safety margin of its expiry, has no room left, has expired, or proved
//!   too small for a reservation that then took a new lease (its leftover
//!   would sit idle: idle leftovers go back while the new lease is asked
//!   for, busy ones when their holds end); every lease is returned at
//!   graceful shutdown ([`LeaseLedger::shutdown`]). A refused lease request
//!   is asked once more if this node just gave tokens of the agent back.
//! - `remaining` is the control plane's balance with this node's leases
//!   folded in: what was spent on them counts as spent, their free room as
//!   available.
//!
//! # Expiry
//! Lease lifetimes are measured on the node's monotonic clock from the moment
//! the lease was asked for (`expires_at_ms` minus the node's wall clock at
//! that moment), so the network delay only shortens them; clock skew between
//! node and control plane must stay within the safety margin. No reservation
//! is taken from a lease within `lease_margin_secs` of its expiry (at most
//! half its lifetime, so that short leases stay usable), which leaves an
//! operation that margin to finish. One that outlives its lease anyway is
//! not silently covered: the control plane took the lease's tokens back at
//! expiry, so settling it charges nothing locally ([`Settlement::charged`]
//! is 0, all of `used` is `uncovered`); the usage is still added to the
//! lease's spent total, which is reported when the lease is returned, and
//! the control plane charges a late return as far as the budget then allows
//! (never into a negative balance). A lease whose holds are still open
//! `lease_grace_secs` after its expiry (their caller hung or went away) is
//! returned anyway with what was spent on it so far; those reservations are
//! detached from it, and settling one later charges nothing and reports all
//! its usage as uncovered. Lifetimes are capped at an hour (a lease
//! announcing more is returned within that hour), and a lease that arrives
//! with no lifetime left goes straight back.
//!
//! # Cancellation
//! The caller of `reserve` may be dropped at any await (a run deadline, a
//! cancelled call). Nothing the ledger must finish depends on it: the
//! caller only waits for its turn to acquire (harmless to abandon) and then
//! for a task of the ledger's own, which returns the leftovers, asks for the
//! lease and takes the hold. That task completes whether or not anyone
//! waits; its hold is handed to the caller by a guard that releases it if
//! nobody takes it. Every network return runs as a task of the ledger too,
//! so a lease taken out of the books is always either confirmed returned,
//! queued for a retry, or reported unreturned at shutdown.
//!
//! # What a crash loses: nothing charged twice, nothing uncharged
//! With the node's spend journal attached ([`LeaseLedger::attach_journal`],
//! `crate::journal`), every lease is journaled before it is used, every
//! reservation (at its whole amount) before the guest's call proceeds, and
//! every settlement before the call returns, each committed by the node's
//! group commit. A node killed with leases out finds them in the journal
//! when it starts and returns them with their journaled spend (reservations
//! that were in flight count whole: what the provider served them is
//! unknown). Meanwhile the control plane counted each expired, unreturned
//! lease's whole grant as spent (provisional) and corrects it once when the
//! late return arrives. A confirmed return deletes the lease's journal rows.
//!
//! Returns that fail (network, 5xx) are retried with backoff until they
//! succeed; a return is idempotent on the control plane. A lease request
//! that times out is not retried (the call fails as unavailable); if the
//! control plane granted it anyway, that lease is unknown to the node and
//! its tokens come back when it expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use prometheus::IntCounterVec;
use reqwest::Url;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, ControlPlaneConfig, read_secret};
use crate::journal::{Journal, JournalOp, spend_id};
use crate::store::UnreturnedLease;
// The lease defaults and settings live in the configuration (which must not
// depend on this module); re-exported where callers have always found them.
pub use crate::config::{
    DEFAULT_EXPIRY_MARGIN, DEFAULT_IDLE_RETURN, DEFAULT_LEASE_CHUNK, DEFAULT_OPEN_GRACE,
    DEFAULT_TIMEOUT, LeaseSettings,
};

/// Longest lease lifetime the node believes: a control plane (or a clock)
/// announcing more gets its lease back within this time, and an `Instant`
/// computed from it cannot overflow.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3_600);

/// How often the maintenance task looks for leases to return.
const TICK: Duration = Duration::from_millis(200);
/// First and longest delay between attempts to return a lease.
const RETURN_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// Largest answer read from the control plane: leases, budgets and token
/// requests are a few hundred bytes; anything near this is not the control
/// plane's API and must not grow the node's memory.
const MAX_BODY: usize = 64 << 10;
/// A reservation without a lease (zero tokens, or detached from a lease
/// returned while it was open) is forgotten after this long: its caller is
/// gone, and settling it would only have reported uncovered usage.
const DETACHED_TTL: Duration = Duration::from_secs(3_600);

/// Why a [`LeaseLedger`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The control plane URL cannot be used.
    #[error("control plane URL {0:?} is not an http(s) base URL")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// One lease as the node sees it (for tests, metrics and debugging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSnapshot {
    /// The agent whose budget it is a slice of.
    pub agent_id: String,
    /// Control-plane id.
    pub lease_id: String,
    /// Tokens granted.
    pub granted: u64,
    /// Tokens charged against it so far (at most `granted`).
    pub spent: u64,
    /// Usage it could not cover (beyond its room, or after its expiry):
    /// reported at return with `spent`, charged there if the budget allows.
    pub uncovered: u64,
    /// Tokens held by open reservations.
    pub held: u64,
    /// Open reservations.
    pub open: usize,
    /// Whether it may still serve new reservations.
    pub usable: bool,
    /// Whether its lifetime is over.
    pub expired: bool,
    /// Time left until it expires (zero once expired).
    pub expires_in: Duration,
}

/// What [`LeaseLedger::shutdown`] achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Leases returned.
    pub returned: usize,
    /// Leases whose return did not succeed in time, or was still under way
    /// at the deadline (they expire on the control plane, which counts them
    /// spent until the node, started again, reports them from its journal).
    pub unreturned: usize,
}

/// A [`BudgetLedger`] spending against leases from the control plane.
pub struct LeaseLedger {
    inner: Arc<Inner>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    node_id: String,
    settings: LeaseSettings,
    agents: Mutex<HashMap<String, Arc<AgentLeases>>>,
    /// Returns that failed and are retried.
    pending: Mutex<Vec<PendingReturn>>,
    /// The ledger's own tasks (acquisitions and returns), which outlive the
    /// calls that started them; shutdown waits for them.
    tracker: TaskTracker,
    /// Return tasks under way.
    returning: AtomicUsize,
    /// Returns the control plane confirmed, ever.
    returned: AtomicU64,
    next_reservation: AtomicU64,
    /// Something may be returnable now.
    wake: Notify,
    closed: AtomicBool,
    counters: OnceLock<IntCounterVec>,
    /// Where spend is made durable before a guest sees it (set once the
    /// node's group-commit writer runs: [`LeaseLedger::attach_journal`]).
    journal: OnceLock<Journal>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Bookkeeping updates are single statements on plain numbers: the state
    // is consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LeaseLedger {
    /// A ledger leasing from the control plane at `base` as `node_id`,
    /// presenting `token`. Starts its maintenance task on the current tokio
    /// runtime.
    pub fn new(
        base: &str,
        token: Option<String>,
        node_id: impl Into<String>,
        settings: LeaseSettings,
    ) -> Result<Self, LeaseError> {
        let base_url = Url::parse(base).map_err(|_| LeaseError::Url(base.to_owned()))?;
        if base_url.cannot_be_a_base() || !matches!(base_url.scheme(), "http" | "https") {
            return Err(LeaseError::Url(base.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| LeaseError::Client(e.to_string()))?;
        let inner = Arc::new(Inner {
            http,
            base: base_url,
            token,
            node_id: node_id.into(),
            settings,
            agents: Mutex::default(),
            pending: Mutex::default(),
            tracker: TaskTracker::new(),
            returning: AtomicUsize::new(0),
            returned: AtomicU64::new(0),
            next_reservation: AtomicU64::new(1),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            counters: OnceLock::new(),
            journal: OnceLock::new(),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(maintain(Arc::downgrade(&inner), cancel.clone()));
        Ok(Self {
            inner,
            cancel,
            task: Mutex::new(Some(task)),
        })
    }

    /// The ledger `[control_plane]` describes, for node `node_id`.
    pub fn from_config(cp: &ControlPlaneConfig, node_id: &str) -> Result<Self, ConfigError> {
        let token = match &cp.token_file {
            Some(path) => Some(read_secret(path)?),
            None => None,
        };
        Self::new(&cp.url, token, node_id, LeaseSettings::from_config(cp))
            .map_err(|e| ConfigError::Invalid(format!("control_plane: {e}")))
    }

    /// Count lease events into `counter` (label `event`: `granted`,
    /// `refused`, `returned`, `return_failed`, `lost`, `expired_open`,
    /// `returned_open`: returned after the grace period with holds open).
    pub fn count_into(&self, counter: IntCounterVec) {
        let _ = self.inner.counters.set(counter);
    }

    /// Journal leases, reservations and settlements through `journal`
    /// from now on, and return the leases a previous process left
    /// unreturned (`unreturned`, read from the journal at start) with their
    /// journaled spend: the control plane corrects its provisional charge.
    /// Returns are retried like any other until the control plane answers.
    ///
    /// Leases the control plane granted a previous process of this node
    /// that the journal does not know (granted while it died, before the
    /// journal write) had nothing spent on them, since every lease is
    /// journaled before it is used: they are returned with 0. Call before
    /// this ledger takes any lease (at start, before serving).
    pub async fn attach_journal(&self, journal: Journal, unreturned: Vec<UnreturnedLease>) {
        if self.inner.journal.set(journal).is_err() {
            tracing::warn!("a spend journal was attached twice; keeping the first");
            return;
        }
        let now = Instant::now();
        let pending = |agent_id: String, lease_id: String, spent: u64| PendingReturn {
            agent_id,
            lease_id,
            spent,
            attempts: 0,
            next_try: now,
        };
        let mut returns: Vec<PendingReturn> = unreturned
            .into_iter()
            .map(|l| pending(l.agent_id, l.lease_id, l.spent))
            .collect();
        let mut url = self.inner.url(&["v1", "nodes", "leases"]);
        url.query_pairs_mut()
            .append_pair("node_id", &self.inner.node_id);
        match self
            .inner
            .call::<RemoteLeases>(reqwest::Method::GET, url, None)
            .await
        {
            Ok(remote) => {
                let known: std::collections::HashSet<String> =
                    returns.iter().map(|r| r.lease_id.clone()).collect();
                returns.extend(
                    remote
                        .items
                        .into_iter()
                        .filter(|l| !known.contains(&l.lease_id))
                        .map(|l| pending(l.agent_id, l.lease_id, 0)),
                );
            }
            // The journal's leases are still returned; unknown ones stay
            // provisional on the control plane (conservative).
            Err(e) => tracing::warn!(error = %e.reason(), code = e.code(),
                "listing this node's unreturned leases failed; returning the journal's only"),
        }
        if returns.is_empty() {
            return;
        }
        let spent: u64 = returns.iter().map(|r| r.spent).sum();
        tracing::warn!(
            leases = returns.len(),
            spent,
            "returning leases a previous process left unreturned, with their journaled spend"
        );
        lock(&self.inner.pending).extend(returns);
        self.inner.wake.notify_one();
    }

    /// Every lease held now, by agent.
    pub fn snapshot(&self) -> Vec<LeaseSnapshot> {
        let now = Instant::now();
        let agents: Vec<(String, Arc<AgentLeases>)> = lock(&self.inner.agents)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut out = Vec::new();
        for (agent_id, agent) in agents {
            let book = lock(&agent.book);
            out.extend(book.leases.iter().map(|l| LeaseSnapshot {
                agent_id: agent_id.clone(),
                lease_id: l.id.clone(),
                granted: l.granted,
                spent: l.spent,
                uncovered: l.uncovered,
                held: l.held,
                open: l.open,
                usable: l.usable(now),
                expired: l.expired(now),
                expires_in: l.expires.saturating_duration_since(now),
            }));
        }
        out
    }

    /// Ask the control plane to count one message of `agent_id` against
    /// its tenant's daily quota (`POST /v1/nodes/messages/admit`). `Err`
    /// is the wait in milliseconds a refused guest is told: the quota's
    /// own until the next day, or a second when the control plane could
    /// not answer (fail closed: a message not counted is not sent).
    pub async fn admit_message(&self, agent_id: &str, channel: &str) -> Result<(), u64> {
        let url = self.inner.url(&["v1", "nodes", "messages", "admit"]);
        let body = serde_json::json!({ "agent_id": agent_id, "channel": channel });
        match self
            .inner
            .call::<serde_json::Value>(reqwest::Method::POST, url, Some(&body))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let wait = e.detail("retry_after_ms").unwrap_or(1_000).max(1);
                if e.code() != "quota_exceeded" {
                    tracing::warn!(agent = %agent_id, error = %e.reason(), code = e.code(),
                        "asking the control plane to admit a message failed; not sent");
                }
                Err(wait)
            }
        }
    }

    /// Returns that failed and wait for another attempt.
    pub fn pending_returns(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Reservations open now (settled or released ones are gone).
    pub fn open_reservations(&self) -> usize {
        let agents: Vec<Arc<AgentLeases>> = lock(&self.inner.agents).values().cloned().collect();
        agents.iter().map(|a| lock(&a.book).open.len()).sum()
    }

    /// Graceful stop: refuse new reservations, let the acquisitions and
    /// returns under way finish (for up to half of `deadline`), then return
    /// every lease (with what was spent on it, even if reservations are
    /// still open) and every pending return, all within `deadline`.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        let started = Instant::now();
        let end = started + deadline;
        let drained_by = started + deadline / 2;
        let returned_before = inner.returned.load(Ordering::SeqCst);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            // The task finishes the pass it is making; its returns run as
            // tracked tasks.
            let _ = tokio::time::timeout_at(drained_by, task).await;
        }
        // Acquisitions put their leases in the books; returns under way end
        // confirmed or queued as pending.
        inner.tracker.close();
        let _ = tokio::time::timeout_at(drained_by, inner.tracker.wait()).await;
        let still_returning = inner.returning.load(Ordering::SeqCst);
        let earlier = usize::try_from(
            inner
                .returned
                .load(Ordering::SeqCst)
                .saturating_sub(returned_before),
        )
        .unwrap_or(usize::MAX);
        let mut returns = std::mem::take(&mut *lock(&inner.pending));
        let agents: Vec<(String, Arc<AgentLeases>)> = lock(&inner.agents)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let now = Instant::now();
        for (agent_id, agent) in agents {
            let mut book = lock(&agent.book);
            for lease in book.leases.drain(..) {
                if lease.open > 0 {
                    tracing::warn!(agent = %agent_id, lease = %lease.id, open = lease.open,
                        "returning a lease with reservations still open at shutdown");
                }
                returns.push(lease.into_return(&agent_id, now));
            }
            book.open.clear();
        }
        let total = returns.len();
        let attempts = futures_util::future::join_all(
            returns
                .into_iter()
                .map(|r| async move { inner.return_now(&r, false).await }),
        );
        let returned_now = match tokio::time::timeout_at(end, attempts).await {
            Ok(results) => results.into_iter().filter(|ok| *ok).count(),
            Err(_) => 0,
        };
        let unreturned = total - returned_now + still_returning;
        let returned = earlier + returned_now;
        if unreturned > 0 {
            tracing::warn!(
                unreturned,
                "leases not returned at shutdown: they expire on the control plane, \
                 counted spent until this node reports them from its journal at start"
            );
        } else if returned > 0 {
            tracing::info!(returned, "budget leases returned");
        }
        ShutdownReport {
            returned,
            unreturned,
        }
    }
}

impl Drop for LeaseLedger {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The maintenance task: returns leases that should go back and retries
/// failed returns.
async fn maintain(inner: Weak<Inner>, cancel: CancellationToken) {
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.return_due().await;
        inner.retry_pending().await;
        // A wake while the pass ran left a permit: the wait ends at once.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

mod book;
mod client;
mod ledger;

use book::*;
use client::*;

#[cfg(test)]
mod tests;
