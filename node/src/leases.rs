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
//! # What a crash loses
//! Spending is reported when a lease is returned. A node killed with leases
//! out loses their spent totals: the leases expire and their tokens go back
//! to the budget, so the tokens the node spent since it took them were
//! served but never charged. That exposure is bounded by the leases the node
//! held (`lease_chunk` per agent, typically) and by their lifetime.
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

use async_trait::async_trait;
use delta_budget_rules as rules;
use delta_host_api::budget::{Balance, BudgetError, RequestStatus, TokenRequest};
use delta_host_api::{BudgetLedger, CallContext, LedgerError, Reservation, Settlement};
use prometheus::IntCounterVec;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, ControlPlaneConfig, read_secret};
// The lease defaults and settings live in the configuration (which must not
// depend on this module); re-exported where callers have always found them.
pub use crate::config::{
    DEFAULT_EXPIRY_MARGIN, DEFAULT_IDLE_RETURN, DEFAULT_LEASE_CHUNK, DEFAULT_OPEN_GRACE,
    DEFAULT_TIMEOUT, LeaseSettings,
};
use crate::model::now_ms;

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
    /// at the deadline (they expire on the control plane; their spent totals
    /// are lost).
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
}

/// One agent's leases on this node.
#[derive(Default)]
struct AgentLeases {
    /// Held while asking the control plane for a lease: one at a time per
    /// agent. The acquisition task owns it, so that a caller that gives up
    /// does not let a second acquisition start while the first is running.
    acquire: Arc<tokio::sync::Mutex<()>>,
    /// The bookkeeping; never held across an `.await`.
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    leases: Vec<Lease>,
    open: HashMap<String, Open>,
}

struct Open {
    /// `None`: a zero-token reservation made without a lease, or one whose
    /// lease was returned while it was open.
    lease_id: Option<String>,
    amount: u64,
    /// Since when it has had no lease.
    detached: Option<Instant>,
}

struct Lease {
    id: String,
    granted: u64,
    /// Charged within the grant.
    spent: u64,
    /// Usage beyond what the lease could cover; takes no room (so it never
    /// eats another reservation's hold) but is reported at return.
    uncovered: u64,
    held: u64,
    open: usize,
    expires: Instant,
    usable_until: Instant,
    last_used: Instant,
    /// Expiry with open reservations has been logged.
    expiry_noted: bool,
    /// Too small for a reservation that then leased anew: no new holds; it
    /// goes back once its open reservations end.
    retired: bool,
}

impl Lease {
    fn room(&self) -> u64 {
        self.granted
            .saturating_sub(self.spent.saturating_add(self.held))
    }

    fn usable(&self, now: Instant) -> bool {
        !self.retired && now < self.usable_until
    }

    /// The return of this lease, reporting all its usage as spent.
    fn into_return(self, agent_id: &str, now: Instant) -> PendingReturn {
        PendingReturn {
            agent_id: agent_id.to_owned(),
            spent: self.spent.saturating_add(self.uncovered),
            lease_id: self.id,
            attempts: 0,
            next_try: now,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        now >= self.expires
    }

    /// Whether it should go back to the control plane now.
    fn returnable(&self, now: Instant, idle: Duration, grace: Duration) -> bool {
        if self.open > 0 {
            // Its holds outlived it by the grace period: their callers are
            // stuck or gone, and waiting longer only delays reporting what
            // was spent on it.
            return self.expires.checked_add(grace).is_some_and(|t| now >= t);
        }
        !self.usable(now)
            || self.room() == 0
            || now.saturating_duration_since(self.last_used) >= idle
    }
}

/// A hold taken by an acquisition task for a `reserve` call that may no
/// longer be waiting: unless handed over to it, it is released when dropped
/// (also when the task's output is dropped because nobody joined it).
struct Hold {
    inner: Arc<Inner>,
    agent: Arc<AgentLeases>,
    reservation: Reservation,
    handed_over: bool,
}

impl Hold {
    fn hand_over(mut self) -> Reservation {
        self.handed_over = true;
        self.reservation.clone()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.handed_over {
            tracing::debug!(agent = %self.reservation.agent_id, reservation = %self.reservation.id,
                "the caller of reserve went away: its hold is released");
            self.inner.end_hold(&self.agent, &self.reservation.id);
        }
    }
}

/// A lease taken out of a book, to be returned.
#[derive(Debug, Clone)]
struct PendingReturn {
    agent_id: String,
    lease_id: String,
    spent: u64,
    attempts: u32,
    next_try: Instant,
}

/// What the control plane answered to a lease request.
#[derive(Debug, Deserialize)]
struct Grant {
    lease_id: String,
    granted: u64,
    expires_at_ms: i64,
}

/// What the control plane answered to a return.
#[derive(Debug, Deserialize)]
struct Returned {
    charged: u64,
    #[serde(default)]
    uncovered: u64,
    status: String,
}

#[derive(Debug, Deserialize)]
struct RemoteBalance {
    allocated: u64,
    spent: u64,
    available: u64,
}

#[derive(Debug, Deserialize)]
struct RemoteRequest {
    id: String,
    amount: u64,
    reason: String,
    status: String,
}

/// A failed call to the control plane.
#[derive(Debug)]
enum CallError {
    /// No usable answer: connection, timeout, unreadable body.
    Network(String),
    /// An error status, with the body's `code` and `details`.
    Status {
        status: StatusCode,
        code: String,
        details: Value,
    },
}

impl CallError {
    /// A short account for guests and errors: no URL, no body text.
    fn reason(&self) -> String {
        match self {
            Self::Network(what) => format!("the budget authority did not answer ({what})"),
            Self::Status { status, .. } => {
                format!("the budget authority answered {}", status.as_u16())
            }
        }
    }

    fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Network(_) => None,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::Status { code, .. } => code,
            Self::Network(_) => "",
        }
    }

    fn detail(&self, key: &str) -> Option<u64> {
        match self {
            Self::Status { details, .. } => details.get(key).and_then(Value::as_u64),
            Self::Network(_) => None,
        }
    }
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
                "leases not returned at shutdown: they expire on the control plane and \
                 their spent totals are lost"
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

impl Inner {
    fn count(&self, event: &str) {
        if let Some(c) = self.counters.get() {
            c.with_label_values(&[event]).inc();
        }
    }

    fn agent(&self, agent_id: &str) -> Arc<AgentLeases> {
        Arc::clone(lock(&self.agents).entry(agent_id.to_owned()).or_default())
    }

    fn existing_agent(&self, agent_id: &str) -> Option<Arc<AgentLeases>> {
        lock(&self.agents).get(agent_id).cloned()
    }

    fn reservation_id(&self) -> String {
        format!(
            "lres_{}",
            self.next_reservation.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Hold `amount` from a usable lease with room, if there is one. The
    /// lease with the least room that fits is chosen, so that large rooms
    /// stay whole for large reservations.
    fn try_hold(&self, agent: &AgentLeases, agent_id: &str, amount: u64) -> Option<Reservation> {
        let now = Instant::now();
        let mut book = lock(&agent.book);
        let lease = book
            .leases
            .iter_mut()
            .filter(|l| l.usable(now) && l.room() >= amount && (amount > 0 || l.room() > 0))
            .min_by_key(|l| l.room())?;
        lease.held += amount;
        lease.open += 1;
        lease.last_used = now;
        let lease_id = lease.id.clone();
        let id = self.reservation_id();
        book.open.insert(
            id.clone(),
            Open {
                lease_id: Some(lease_id),
                amount,
                detached: None,
            },
        );
        Some(Reservation {
            id,
            agent_id: agent_id.to_owned(),
            amount,
        })
    }

    /// Take out of the agent's book its idle leases too small for
    /// `amount`, to be returned while a new lease is asked for: leftovers
    /// kept for later would hold tokens other nodes may need (and that a
    /// crash would lose).
    fn take_leftovers(
        &self,
        agent: &AgentLeases,
        agent_id: &str,
        amount: u64,
    ) -> Vec<PendingReturn> {
        let now = Instant::now();
        let mut book = lock(&agent.book);
        let (idle, keep): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut book.leases)
            .into_iter()
            .partition(|l| l.usable(now) && l.room() < amount && l.open == 0);
        book.leases = keep;
        idle.into_iter()
            .map(|l| l.into_return(agent_id, now))
            .collect()
    }

    /// A new lease replaced the busy ones too small for `amount`: they take
    /// no new holds and go back when their holds end.
    fn retire_leftovers(&self, agent: &AgentLeases, amount: u64, new: &Reservation) {
        let now = Instant::now();
        let mut book = lock(&agent.book);
        let new_lease = book.open.get(&new.id).and_then(|o| o.lease_id.clone());
        for lease in book
            .leases
            .iter_mut()
            .filter(|l| l.usable(now) && l.room() < amount && Some(&l.id) != new_lease.as_ref())
        {
            lease.retired = true;
        }
    }

    /// The largest reservation this node's leases of the agent could take
    /// now.
    fn largest_room(&self, agent: &AgentLeases) -> u64 {
        let now = Instant::now();
        lock(&agent.book)
            .leases
            .iter()
            .filter(|l| l.usable(now))
            .map(Lease::room)
            .max()
            .unwrap_or(0)
    }

    /// The slow path of `reserve`, run as a task of the ledger holding the
    /// agent's acquisition turn: return the agent's idle leftovers too small
    /// for `amount` while a new lease is asked for, and hold `amount` of it.
    /// It completes whether or not the caller still waits.
    async fn acquire(
        self: Arc<Self>,
        agent: Arc<AgentLeases>,
        agent_id: String,
        amount: u64,
        _turn: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Hold, LedgerError> {
        let leftovers = self.take_leftovers(&agent, &agent_id, amount);
        let (ask, min) = rules::lease_ask(amount, self.settings.chunk);
        let (mut obtained, mut gave_back) = tokio::join!(
            self.obtain(&agent, &agent_id, ask, min),
            self.return_all(leftovers)
        );
        let mut retried = false;
        loop {
            match obtained {
                Ok(hold) => {
                    self.retire_leftovers(&agent, amount, &hold.reservation);
                    return Ok(hold);
                }
                Err(e) if e.status() == Some(StatusCode::CONFLICT) => {
                    // The tokens this node gave back (now, or idle leases
                    // still in the book) may be the missing ones: ask once
                    // more.
                    if !retried {
                        retried = true;
                        gave_back |= self.return_idle_with_room(&agent, &agent_id).await;
                        if gave_back {
                            obtained = self.obtain(&agent, &agent_id, ask, min).await;
                            continue;
                        }
                    }
                    self.count("refused");
                    let remote = e.detail("available").unwrap_or(0);
                    return Err(LedgerError::Insufficient {
                        needed: amount,
                        available: remote.max(self.largest_room(&agent)).min(amount - 1),
                    });
                }
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                    return Err(LedgerError::UnknownAccount(agent_id));
                }
                Err(e) => {
                    tracing::warn!(agent = %agent_id, error = %e.reason(), code = e.code(),
                        "leasing tokens from the control plane failed");
                    return Err(LedgerError::Storage(e.reason()));
                }
            }
        }
    }

    /// Ask for a lease of `amount` (at least `min`) and hold `min` of it.
    async fn obtain(
        self: &Arc<Self>,
        agent: &Arc<AgentLeases>,
        agent_id: &str,
        amount: u64,
        min: u64,
    ) -> Result<Hold, CallError> {
        let url = self.url(&["v1", "nodes", "leases"]);
        let body = json!({
            "node_id": self.node_id,
            "agent_id": agent_id,
            "amount": amount,
            "min_amount": min,
        });
        let sent_at = Instant::now();
        let sent_ms = now_ms();
        let grant: Grant = self.call(Method::POST, url, Some(&body)).await?;
        self.count("granted");
        // Non-positive: expired on arrival. Capped: an `Instant` cannot hold
        // an arbitrary future, and a node keeps no lease for long anyway.
        let announced = grant.expires_at_ms.saturating_sub(sent_ms);
        let lifetime = u64::try_from(announced)
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO)
            .min(MAX_LIFETIME);
        if u64::try_from(announced).is_ok_and(|ms| ms > MAX_LIFETIME.as_millis() as u64) {
            tracing::debug!(agent = %agent_id, lease = %grant.lease_id, announced_ms = announced,
                "a lease announced a lifetime beyond the cap; it goes back within the cap");
        }
        let expires = sent_at.checked_add(lifetime).unwrap_or(sent_at);
        let usable_until = expires
            .checked_sub(self.settings.expiry_margin.min(lifetime / 2))
            .unwrap_or(sent_at);
        let now = Instant::now();
        let mut lease = Lease {
            id: grant.lease_id.clone(),
            granted: grant.granted,
            spent: 0,
            uncovered: 0,
            held: 0,
            open: 0,
            expires,
            usable_until,
            last_used: now,
            expiry_noted: false,
            retired: false,
        };
        if lifetime.is_zero() || !lease.usable(now) || lease.room() < min {
            // Nothing this node can use (expired on arrival: clocks apart,
            // or a grant below the minimum): give it back at once.
            tracing::warn!(agent = %agent_id, lease = %grant.lease_id, granted = grant.granted,
                lifetime_ms = lifetime.as_millis() as u64,
                "a lease arrived unusable (expired or below the minimum); check the clocks");
            drop(self.spawn_return(lease.into_return(agent_id, now)));
            return Err(CallError::Network("the lease arrived unusable".into()));
        }
        // Held in the same step that makes the lease visible, so that
        // nobody else takes the room it was asked for; the guard is made in
        // that step too, so the hold cannot outlive an absent caller.
        lease.held = min;
        lease.open = 1;
        let id = self.reservation_id();
        let mut book = lock(&agent.book);
        book.leases.push(lease);
        book.open.insert(
            id.clone(),
            Open {
                lease_id: Some(grant.lease_id),
                amount: min,
                detached: None,
            },
        );
        Ok(Hold {
            inner: Arc::clone(self),
            agent: Arc::clone(agent),
            reservation: Reservation {
                id,
                agent_id: agent_id.to_owned(),
                amount: min,
            },
            handed_over: false,
        })
    }

    /// End reservation `id` without charging it; answers whether it was
    /// open.
    fn end_hold(&self, agent: &AgentLeases, id: &str) -> bool {
        let now = Instant::now();
        let mut book = lock(&agent.book);
        let Some(open) = book.open.remove(id) else {
            return false;
        };
        let mut wake = false;
        if let Some(lease) = open
            .lease_id
            .as_deref()
            .and_then(|id| book.leases.iter_mut().find(|l| l.id == id))
        {
            lease.held = lease.held.saturating_sub(open.amount);
            lease.open = lease.open.saturating_sub(1);
            lease.last_used = now;
            wake = lease.open == 0 && !lease.usable(now);
        }
        drop(book);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Return a lease taken out of a book in a task of its own, so that the
    /// return is made (or queued for a retry) even if whoever asked for it
    /// stops waiting.
    fn spawn_return(self: &Arc<Self>, r: PendingReturn) -> JoinHandle<bool> {
        let inner = Arc::clone(self);
        self.returning.fetch_add(1, Ordering::SeqCst);
        self.tracker.spawn(async move {
            let ok = inner.return_now(&r, true).await;
            inner.returning.fetch_sub(1, Ordering::SeqCst);
            ok
        })
    }

    /// Return these leases concurrently; answers whether any went back.
    async fn return_all(self: &Arc<Self>, returns: Vec<PendingReturn>) -> bool {
        if returns.is_empty() {
            return false;
        }
        let tasks: Vec<JoinHandle<bool>> =
            returns.into_iter().map(|r| self.spawn_return(r)).collect();
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .any(|done| matches!(done, Ok(true)))
    }

    /// Take out of the agent's book every lease without open reservations
    /// that still has room, and return them now; answers whether any
    /// tokens went back.
    async fn return_idle_with_room(self: &Arc<Self>, agent: &AgentLeases, agent_id: &str) -> bool {
        let now = Instant::now();
        let taken: Vec<PendingReturn> = {
            let mut book = lock(&agent.book);
            let (idle, keep): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut book.leases)
                .into_iter()
                .partition(|l| l.open == 0 && l.room() > 0);
            book.leases = keep;
            idle.into_iter()
                .map(|l| l.into_return(agent_id, now))
                .collect()
        };
        self.return_all(taken).await
    }

    /// Return what should go back now.
    async fn return_due(self: &Arc<Self>) {
        let now = Instant::now();
        let idle = self.settings.idle_return;
        let grace = self.settings.open_grace;
        let agents: Vec<(String, Arc<AgentLeases>)> = lock(&self.agents)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let mut due = Vec::new();
        for (agent_id, agent) in &agents {
            let mut book = lock(&agent.book);
            for lease in &mut book.leases {
                if lease.open > 0 && lease.expired(now) && !lease.expiry_noted {
                    lease.expiry_noted = true;
                    self.count("expired_open");
                    tracing::warn!(agent = %agent_id, lease = %lease.id, open = lease.open,
                        "a lease expired with reservations open: their usage is reported \
                         at return and charged as far as the budget allows");
                }
            }
            let (ready, keep): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut book.leases)
                .into_iter()
                .partition(|l| l.returnable(now, idle, grace));
            book.leases = keep;
            for lease in &ready {
                if lease.open == 0 {
                    continue;
                }
                self.count("returned_open");
                tracing::warn!(agent = %agent_id, lease = %lease.id, open = lease.open,
                    "returning a lease whose reservations outlived it by the grace period; \
                     settling them later reports their usage as uncovered");
                for open in book.open.values_mut() {
                    if open.lease_id.as_deref() == Some(lease.id.as_str()) {
                        open.lease_id = None;
                        open.detached = Some(now);
                    }
                }
            }
            book.open.retain(|_, o| {
                o.detached
                    .is_none_or(|t| now.saturating_duration_since(t) < DETACHED_TTL)
            });
            due.extend(
                ready
                    .into_iter()
                    .map(|l: Lease| l.into_return(agent_id, now)),
            );
        }
        self.return_all(due).await;
        // Forget agents with nothing on this node that nobody is using.
        let mut map = lock(&self.agents);
        map.retain(|_, a| {
            Arc::strong_count(a) > 1 || {
                let book = lock(&a.book);
                !book.leases.is_empty() || !book.open.is_empty()
            }
        });
    }

    async fn retry_pending(self: &Arc<Self>) {
        let now = Instant::now();
        let due: Vec<PendingReturn> = {
            let mut pending = lock(&self.pending);
            let (due, wait) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|r| r.next_try <= now);
            *pending = wait;
            due
        };
        self.return_all(due).await;
    }

    /// Return one lease; a transient failure queues it for a retry if
    /// `requeue` (shutdown's last attempts do not). Answers whether the
    /// control plane took it back.
    async fn return_now(&self, r: &PendingReturn, requeue: bool) -> bool {
        let url = self.url(&["v1", "nodes", "leases", &r.lease_id, "return"]);
        let body = json!({ "node_id": self.node_id, "spent": r.spent });
        match self.call::<Returned>(Method::POST, url, Some(&body)).await {
            Ok(answer) => {
                self.count("returned");
                self.returned.fetch_add(1, Ordering::SeqCst);
                if answer.uncovered > 0 {
                    tracing::warn!(agent = %r.agent_id, lease = %r.lease_id, spent = r.spent,
                        charged = answer.charged, uncovered = answer.uncovered,
                        status = %answer.status, "a returned lease's usage was not all covered");
                } else {
                    tracing::debug!(agent = %r.agent_id, lease = %r.lease_id, spent = r.spent,
                        status = %answer.status, "lease returned");
                }
                true
            }
            // The control plane does not know the lease, or refuses the
            // body: retrying will not change that.
            Err(e)
                if matches!(
                    e.status(),
                    Some(StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY)
                ) =>
            {
                self.count("lost");
                tracing::error!(agent = %r.agent_id, lease = %r.lease_id, spent = r.spent,
                    error = %e.reason(), code = e.code(),
                    "the control plane refused a lease return; its usage is not reported");
                false
            }
            Err(e) => {
                self.count("return_failed");
                let attempts = r.attempts.saturating_add(1);
                let delay = RETURN_BACKOFF
                    .0
                    .saturating_mul(1 << attempts.min(8))
                    .min(RETURN_BACKOFF.1);
                tracing::warn!(agent = %r.agent_id, lease = %r.lease_id, attempts,
                    error = %e.reason(), retry_in_ms = delay.as_millis() as u64,
                    "returning a lease failed; will retry");
                if requeue {
                    lock(&self.pending).push(PendingReturn {
                        attempts,
                        next_try: Instant::now() + delay,
                        ..r.clone()
                    });
                }
                false
            }
        }
    }

    /// `{base}/a/b/c` with each segment escaped.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One call; `2xx` bodies decode as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, CallError> {
        let mut req = self.http.request(method, url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Network(describe(&e)))?;
        let status = resp.status();
        let bytes = delta_http::client::read_capped(resp, MAX_BODY).await;
        if status.is_success() {
            return bytes
                .map_err(|e| CallError::Network(format!("a {status} answer: {e}")))
                .and_then(|b| {
                    serde_json::from_slice(&b)
                        .map_err(|_| CallError::Network(format!("an unreadable {status} answer")))
                });
        }
        let parsed: Value = bytes
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        Err(CallError::Status {
            status,
            code: parsed
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            details: parsed.get("details").cloned().unwrap_or(Value::Null),
        })
    }
}

/// A reqwest error in a few words (its `Display` names the URL).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_decode() || e.is_body() {
        "the answer was cut short".into()
    } else {
        "the request failed".into()
    }
}

fn parse_status(s: &str) -> Option<RequestStatus> {
    Some(match s {
        "pending" => RequestStatus::Pending,
        "approved" => RequestStatus::Approved,
        "denied" => RequestStatus::Denied,
        "expired" => RequestStatus::Expired,
        _ => return None,
    })
}

fn to_request(r: RemoteRequest) -> Result<TokenRequest, BudgetError> {
    let status = parse_status(&r.status).ok_or_else(|| {
        BudgetError::Unavailable("the budget authority answered an unknown status".into())
    })?;
    Ok(TokenRequest {
        id: r.id,
        amount: r.amount,
        reason: r.reason,
        status,
    })
}

/// The guest's view of a failed budget call.
fn budget_error(e: &CallError) -> BudgetError {
    match (e.status(), e.code()) {
        (Some(StatusCode::CONFLICT), "no_parent") => BudgetError::NoParent,
        (Some(StatusCode::UNPROCESSABLE_ENTITY), "invalid_amount") => {
            BudgetError::InvalidAmount(e.detail("limit").unwrap_or(0))
        }
        _ => {
            tracing::warn!(error = %e.reason(), code = e.code(), "budget call to the control plane failed");
            BudgetError::Unavailable(e.reason())
        }
    }
}

#[async_trait]
impl BudgetLedger for LeaseLedger {
    async fn reserve(
        &self,
        ctx: &CallContext,
        amount: u64,
        _purpose: &str,
    ) -> Result<Reservation, LedgerError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(LedgerError::Storage("the node is shutting down".into()));
        }
        let agent_id = &*ctx.agent_id;
        let agent = inner.agent(agent_id);
        if let Some(r) = inner.try_hold(&agent, agent_id, amount) {
            return Ok(r);
        }
        // One acquisition per agent at a time: whoever waited here may find
        // the lease the previous holder obtained. Giving up while waiting
        // changes nothing.
        let turn = tokio::time::timeout(
            inner.settings.timeout,
            Arc::clone(&agent.acquire).lock_owned(),
        )
        .await
        .map_err(|_| LedgerError::Storage("timed out waiting for a budget lease".into()))?;
        if let Some(r) = inner.try_hold(&agent, agent_id, amount) {
            return Ok(r);
        }
        if amount == 0 {
            // Nothing to hold: no lease needed.
            let id = inner.reservation_id();
            lock(&agent.book).open.insert(
                id.clone(),
                Open {
                    lease_id: None,
                    amount: 0,
                    detached: Some(Instant::now()),
                },
            );
            return Ok(Reservation {
                id,
                agent_id: agent_id.to_owned(),
                amount: 0,
            });
        }
        // The network part runs as the ledger's own task: if this call is
        // dropped, the leftovers still go back, the lease still lands in the
        // book, and its hold is released by the guard nobody takes.
        let task = inner.tracker.spawn(Arc::clone(inner).acquire(
            agent,
            agent_id.to_owned(),
            amount,
            turn,
        ));
        match task.await {
            Ok(result) => result.map(Hold::hand_over),
            Err(e) => {
                tracing::error!(agent = %agent_id, error = %e, "a lease acquisition task failed");
                Err(LedgerError::Storage(
                    "leasing tokens failed on this node".into(),
                ))
            }
        }
    }

    async fn settle(
        &self,
        reservation: &Reservation,
        used: u64,
    ) -> Result<Settlement, LedgerError> {
        let unknown = || LedgerError::UnknownReservation(reservation.id.clone());
        let agent = self
            .inner
            .existing_agent(&reservation.agent_id)
            .ok_or_else(unknown)?;
        let now = Instant::now();
        let mut wake = false;
        let settlement = {
            let mut book = lock(&agent.book);
            let open = book.open.remove(&reservation.id).ok_or_else(unknown)?;
            let lease = open
                .lease_id
                .as_deref()
                .and_then(|id| book.leases.iter_mut().find(|l| l.id == id));
            match lease {
                Some(lease) => {
                    lease.held = lease.held.saturating_sub(open.amount);
                    lease.open = lease.open.saturating_sub(1);
                    lease.last_used = now;
                    // The control plane took an expired lease's tokens
                    // back: nothing here covers the usage; it is reported
                    // at return and charged there if the budget allows.
                    // Otherwise the hold plus room nobody else holds
                    // (the hold was given back above).
                    let cover = if lease.expired(now) { 0 } else { lease.room() };
                    let rules::Settled { charged, uncovered } = rules::settle_within(cover, used);
                    lease.spent += charged;
                    lease.uncovered = lease.uncovered.saturating_add(uncovered);
                    wake = lease.open == 0 && (lease.room() == 0 || !lease.usable(now));
                    Settlement { charged, uncovered }
                }
                // A zero-token hold made without a lease: nothing covers
                // the usage.
                None => Settlement {
                    charged: 0,
                    uncovered: used,
                },
            }
        };
        if settlement.uncovered > 0 {
            tracing::warn!(agent = %reservation.agent_id, reservation = %reservation.id, used,
                uncovered = settlement.uncovered, "usage not covered by a live lease");
        }
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(settlement)
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), LedgerError> {
        let agent = self.inner.existing_agent(&reservation.agent_id);
        if agent.is_some_and(|agent| self.inner.end_hold(&agent, &reservation.id)) {
            Ok(())
        } else {
            Err(LedgerError::UnknownReservation(reservation.id.clone()))
        }
    }

    async fn remaining(&self, ctx: &CallContext) -> Result<Balance, BudgetError> {
        let inner = &self.inner;
        let url = inner.url(&["v1", "nodes", "budgets", &ctx.agent_id]);
        let remote: RemoteBalance = match inner.call(Method::GET, url, None).await {
            Ok(b) => b,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                return Err(BudgetError::NotConfigured);
            }
            Err(e) => return Err(budget_error(&e)),
        };
        // The control plane counts this node's leases as reserved; what was
        // spent on them is spent, and their free room is available. The
        // local view is read after the remote one, so a lease returned in
        // between is missing from both rather than counted twice.
        let (mut spent, mut room) = (0u64, 0u64);
        if let Some(agent) = inner.existing_agent(&ctx.agent_id) {
            let now = Instant::now();
            for l in lock(&agent.book).leases.iter().filter(|l| !l.expired(now)) {
                spent = spent.saturating_add(l.spent);
                if l.usable(now) {
                    room = room.saturating_add(l.room());
                }
            }
        }
        let b = rules::fold_leases(
            remote.allocated,
            remote.spent,
            remote.available,
            spent,
            room,
        );
        Ok(Balance {
            allocated: b.allocated,
            spent: b.spent,
            reserved: b.reserved,
            available: b.available,
        })
    }

    async fn request(
        &self,
        ctx: &CallContext,
        amount: u64,
        reason: String,
    ) -> Result<TokenRequest, BudgetError> {
        let inner = &self.inner;
        let url = inner.url(&["v1", "nodes", "token-requests"]);
        let body = json!({
            "node_id": inner.node_id,
            "agent_id": &*ctx.agent_id,
            "amount": amount,
            "reason": reason,
        });
        match inner
            .call::<RemoteRequest>(Method::POST, url, Some(&body))
            .await
        {
            Ok(r) => to_request(r),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Err(BudgetError::NotConfigured),
            Err(e) => Err(budget_error(&e)),
        }
    }

    async fn poll_request(
        &self,
        ctx: &CallContext,
        id: String,
    ) -> Result<TokenRequest, BudgetError> {
        let inner = &self.inner;
        let mut url = inner.url(&["v1", "nodes", "token-requests", &id]);
        url.query_pairs_mut().append_pair("agent_id", &ctx.agent_id);
        match inner.call::<RemoteRequest>(Method::GET, url, None).await {
            Ok(r) => to_request(r),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Err(BudgetError::UnknownRequest),
            Err(e) => Err(budget_error(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against a loopback control plane that speaks the lease contract, with
    //! its own books: every grant, return and expiry is checked against the
    //! agent's budget as it happens.

    use std::collections::BTreeMap;

    use axum::Router;
    use axum::extract::{Path, Query, State};
    use axum::http::StatusCode as Code;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};

    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Account {
        allocated: u64,
        spent: u64,
        reserved: u64,
        parent: Option<String>,
    }

    impl Account {
        fn available(&self) -> u64 {
            self.allocated - self.spent - self.reserved
        }
    }

    #[derive(Debug, Clone)]
    struct MockLease {
        agent: String,
        granted: u64,
        expires_at_ms: i64,
        /// `active`, `returned`, `expired`.
        status: &'static str,
        answer: Option<Value>,
    }

    #[derive(Debug, Default)]
    struct Books {
        accounts: BTreeMap<String, Account>,
        leases: BTreeMap<String, MockLease>,
        requests: BTreeMap<String, (String, u64, String)>,
        ttl_ms: i64,
        next: u64,
        /// Answer every call with this status.
        fail: Option<u16>,
        /// Wait this long before answering.
        delay: Option<Duration>,
        /// Wait this long more before answering a return.
        return_delay: Option<Duration>,
        /// Wait this long after granting or taking back a lease before
        /// answering (a caller that gives up meanwhile does not undo it).
        answer_delay: Option<Duration>,
        /// Announce this expiry instead of the real one.
        expires_override: Option<i64>,
        /// Lease requests seen: `(amount, min_amount)`.
        asked: Vec<(u64, u64)>,
        /// Returns seen: `(lease, spent)`.
        returns: Vec<(String, u64)>,
        /// Broken invariants (must stay empty).
        violations: Vec<String>,
    }

    impl Books {
        fn expire(&mut self, now: i64) {
            for lease in self.leases.values_mut() {
                if lease.status == "active" && lease.expires_at_ms <= now {
                    lease.status = "expired";
                    if let Some(acc) = self.accounts.get_mut(&lease.agent) {
                        acc.reserved -= lease.granted;
                    }
                }
            }
        }

        fn check(&mut self) {
            for (id, acc) in &self.accounts {
                if acc.spent + acc.reserved > acc.allocated {
                    self.violations.push(format!("{id} overspent: {acc:?}"));
                }
            }
        }
    }

    type Shared = Arc<Mutex<Books>>;

    struct Mock {
        url: String,
        books: Shared,
    }

    impl Mock {
        async fn start(ttl_ms: i64, accounts: &[(&str, u64, Option<&str>)]) -> Self {
            let books: Shared = Arc::new(Mutex::new(Books {
                ttl_ms,
                ..Books::default()
            }));
            for (id, allocated, parent) in accounts {
                lock(&books).accounts.insert(
                    (*id).to_owned(),
                    Account {
                        allocated: *allocated,
                        parent: parent.map(str::to_owned),
                        ..Account::default()
                    },
                );
            }
            let app = Router::new()
                .route("/v1/nodes/leases", post(lease))
                .route("/v1/nodes/leases/{id}/return", post(give_back))
                .route("/v1/nodes/budgets/{agent}", get(budget))
                .route("/v1/nodes/token-requests", post(request))
                .route("/v1/nodes/token-requests/{id}", get(poll))
                .with_state(Arc::clone(&books));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self { url, books }
        }

        fn books(&self) -> MutexGuard<'_, Books> {
            lock(&self.books)
        }

        fn account(&self, id: &str) -> Account {
            let mut books = self.books();
            books.expire(now_ms());
            books.accounts[id].clone()
        }

        /// Every lease granted went back exactly once, charged no more
        /// than it was granted: answers the spent totals reported, by lease.
        fn returned_once(&self) -> BTreeMap<String, u64> {
            let b = self.books();
            let mut seen = BTreeMap::new();
            for (id, spent) in &b.returns {
                assert!(
                    seen.insert(id.clone(), *spent).is_none(),
                    "{id} returned twice: {:?}",
                    b.returns
                );
                let lease = &b.leases[id];
                assert!(*spent <= lease.granted, "{id}: {spent} > {lease:?}");
                let answer = lease.answer.as_ref().expect("answer");
                assert!(answer["charged"].as_u64().expect("charged") <= lease.granted);
            }
            assert_eq!(seen.len(), b.leases.len(), "{:?}", b.returns);
            assert!(b.violations.is_empty(), "{:?}", b.violations);
            seen
        }

        fn all_back(&self, ledger: &LeaseLedger) -> bool {
            let b = self.books();
            b.leases.values().all(|l| l.status == "returned")
                && b.returns.len() >= b.leases.len()
                && ledger.snapshot().is_empty()
                && ledger.open_reservations() == 0
                && ledger.pending_returns() == 0
        }

        fn ledger(&self, settings: LeaseSettings) -> LeaseLedger {
            LeaseLedger::new(&self.url, Some("fleet".into()), "node-t", settings).expect("ledger")
        }
    }

    fn error(code: u16, name: &str, details: Value) -> Response {
        (
            Code::from_u16(code).expect("status"),
            axum::Json(json!({ "code": name, "message": name, "details": details })),
        )
            .into_response()
    }

    /// Every call: the bearer, the failure switch, the delay, expiry.
    async fn enter(books: &Shared, headers: &axum::http::HeaderMap) -> Option<Response> {
        let (fail, delay) = {
            let b = lock(books);
            (b.fail, b.delay)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(code) = fail {
            return Some(error(code, "unavailable", Value::Null));
        }
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer fleet") {
            return Some(error(401, "unauthorized", Value::Null));
        }
        lock(books).expire(now_ms());
        None
    }

    /// What took effect is answered after `answer_delay`.
    async fn answer_later(books: &Shared, answer: Response) -> Response {
        let delay = lock(books).answer_delay;
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        answer
    }

    async fn lease(
        State(books): State<Shared>,
        headers: axum::http::HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> Response {
        if let Some(r) = enter(&books, &headers).await {
            return r;
        }
        let answer = grant(&books, &body);
        answer_later(&books, answer).await
    }

    fn grant(books: &Shared, body: &Value) -> Response {
        let mut b = lock(books);
        let agent = body["agent_id"].as_str().unwrap_or_default().to_owned();
        let amount = body["amount"].as_u64().unwrap_or(0);
        let min = body["min_amount"].as_u64().unwrap_or(0);
        assert_eq!(body["node_id"], "node-t");
        b.asked.push((amount, min));
        let (ttl, next) = (b.ttl_ms, b.next);
        let Some(acc) = b.accounts.get_mut(&agent) else {
            return error(404, "not_found", Value::Null);
        };
        let available = acc.available();
        if available < min.max(1) {
            return error(409, "budget_exhausted", json!({ "available": available }));
        }
        let granted = amount.min(available);
        acc.reserved += granted;
        let id = format!("lse_{next}");
        b.next += 1;
        let expires_at_ms = now_ms() + ttl;
        b.leases.insert(
            id.clone(),
            MockLease {
                agent: agent.clone(),
                granted,
                expires_at_ms,
                status: "active",
                answer: None,
            },
        );
        b.check();
        let expires_at_ms = b.expires_override.unwrap_or(expires_at_ms);
        (
            Code::CREATED,
            axum::Json(
                json!({ "lease_id": id, "agent_id": agent, "granted": granted,
                               "expires_at_ms": expires_at_ms }),
            ),
        )
            .into_response()
    }

    async fn give_back(
        State(books): State<Shared>,
        Path(id): Path<String>,
        headers: axum::http::HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> Response {
        if let Some(r) = enter(&books, &headers).await {
            return r;
        }
        let return_delay = lock(&books).return_delay;
        if let Some(d) = return_delay {
            tokio::time::sleep(d).await;
        }
        let answer = take_back(&books, id, &body);
        answer_later(&books, answer).await
    }

    fn take_back(books: &Shared, id: String, body: &Value) -> Response {
        let spent = body["spent"].as_u64().unwrap_or(0);
        let mut b = lock(books);
        b.returns.push((id.clone(), spent));
        let Some(lease) = b.leases.get(&id).cloned() else {
            return error(404, "not_found", Value::Null);
        };
        if let Some(answer) = lease.answer {
            return axum::Json(answer).into_response();
        }
        let acc = b.accounts.get_mut(&lease.agent).expect("account");
        let (charged, returned) = if lease.status == "active" {
            // Its tokens are released, then the spend is charged (as far as
            // the budget allows beyond the grant).
            acc.reserved -= lease.granted;
            let charged = spent.min(acc.available());
            (charged, lease.granted.saturating_sub(spent))
        } else {
            (spent.min(acc.available()), 0)
        };
        acc.spent += charged;
        let answer = json!({
            "lease_id": id, "charged": charged, "returned": returned,
            "uncovered": spent - charged,
            "status": if lease.status == "active" { "returned" } else { "expired" },
        });
        let l = b.leases.get_mut(&id).expect("lease");
        l.status = "returned";
        l.answer = Some(answer.clone());
        b.check();
        axum::Json(answer).into_response()
    }

    async fn budget(
        State(books): State<Shared>,
        Path(agent): Path<String>,
        headers: axum::http::HeaderMap,
    ) -> Response {
        if let Some(r) = enter(&books, &headers).await {
            return r;
        }
        let b = lock(&books);
        match b.accounts.get(&agent) {
            Some(a) => axum::Json(json!({
                "allocated": a.allocated, "spent": a.spent, "reserved": a.reserved,
                "available": a.available(), "period": "2026-01",
            }))
            .into_response(),
            None => error(404, "not_found", Value::Null),
        }
    }

    async fn request(
        State(books): State<Shared>,
        headers: axum::http::HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> Response {
        if let Some(r) = enter(&books, &headers).await {
            return r;
        }
        let mut b = lock(&books);
        let agent = body["agent_id"].as_str().unwrap_or_default().to_owned();
        let amount = body["amount"].as_u64().unwrap_or(0);
        let Some(acc) = b.accounts.get(&agent) else {
            return error(404, "not_found", Value::Null);
        };
        if acc.parent.is_none() {
            return error(409, "no_parent", Value::Null);
        }
        if amount == 0 || amount > 500 {
            return error(422, "invalid_amount", json!({ "limit": 500 }));
        }
        let id = format!("req_{}", b.next);
        b.next += 1;
        let reason = body["reason"].as_str().unwrap_or_default().to_owned();
        b.requests
            .insert(id.clone(), (agent, amount, reason.clone()));
        (
            Code::CREATED,
            axum::Json(
                json!({ "id": id, "amount": amount, "reason": reason, "status": "pending" }),
            ),
        )
            .into_response()
    }

    async fn poll(
        State(books): State<Shared>,
        Path(id): Path<String>,
        Query(q): Query<HashMap<String, String>>,
        headers: axum::http::HeaderMap,
    ) -> Response {
        if let Some(r) = enter(&books, &headers).await {
            return r;
        }
        let b = lock(&books);
        match b.requests.get(&id) {
            Some((agent, amount, reason)) if Some(agent) == q.get("agent_id") => axum::Json(
                json!({ "id": id, "amount": amount, "reason": reason, "status": "approved" }),
            )
            .into_response(),
            _ => error(404, "not_found", Value::Null),
        }
    }

    fn ctx(agent: &str) -> CallContext {
        CallContext {
            tenant_id: "t".into(),
            agent_id: agent.into(),
            run_id: "run".into(),
        }
    }

    /// Settings that never return a lease by themselves during a test.
    fn patient() -> LeaseSettings {
        LeaseSettings {
            chunk: 1_000,
            idle_return: Duration::from_secs(600),
            expiry_margin: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            open_grace: Duration::from_secs(600),
        }
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn one_lease_serves_many_reservations_and_goes_back_at_shutdown() {
        let cp = Mock::start(60_000, &[("bot", 10_000, Some("main"))]).await;
        let ledger = cp.ledger(patient());
        for _ in 0..5 {
            let r = ledger
                .reserve(&ctx("bot"), 100, "llm:m")
                .await
                .expect("reserve");
            let s = ledger.settle(&r, 60).await.expect("settle");
            assert_eq!(
                s,
                Settlement {
                    charged: 60,
                    uncovered: 0
                }
            );
        }
        let r = ledger
            .reserve(&ctx("bot"), 100, "llm:m")
            .await
            .expect("reserve");
        ledger.release(&r).await.expect("release");
        assert_eq!(
            ledger.release(&r).await,
            Err(LedgerError::UnknownReservation(r.id.clone())),
            "a reservation ends once"
        );
        assert_eq!(cp.books().asked, vec![(1_000, 100)], "one lease, reused");
        let leases = ledger.snapshot();
        assert_eq!(leases.len(), 1);
        assert_eq!(
            (leases[0].granted, leases[0].spent, leases[0].held),
            (1_000, 300, 0)
        );
        // The control plane holds the whole lease; the node's view adds what
        // it spent and its room.
        assert_eq!(cp.account("bot").reserved, 1_000);
        let balance = ledger.remaining(&ctx("bot")).await.expect("remaining");
        assert_eq!(
            (
                balance.allocated,
                balance.spent,
                balance.reserved,
                balance.available
            ),
            (10_000, 300, 0, 9_700)
        );

        let report = ledger.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            report,
            ShutdownReport {
                returned: 1,
                unreturned: 0
            }
        );
        assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 300)]);
        let acc = cp.account("bot");
        assert_eq!((acc.spent, acc.reserved), (300, 0));
        assert!(ledger.snapshot().is_empty());
        assert!(matches!(
            ledger.reserve(&ctx("bot"), 1, "x").await,
            Err(LedgerError::Storage(_))
        ));
        assert!(cp.books().violations.is_empty());
    }

    #[tokio::test]
    async fn a_partial_grant_is_used_and_a_refusal_is_insufficient() {
        let cp = Mock::start(60_000, &[("bot", 300, Some("main"))]).await;
        let ledger = cp.ledger(patient());
        // Asks 1,000, gets the 300 there are.
        let a = ledger
            .reserve(&ctx("bot"), 200, "x")
            .await
            .expect("partial");
        let b = ledger
            .reserve(&ctx("bot"), 100, "x")
            .await
            .expect("rest of it");
        assert_eq!(cp.books().asked, vec![(1_000, 200)]);
        // Nothing left anywhere: the shortfall names what could be had.
        let err = ledger
            .reserve(&ctx("bot"), 50, "x")
            .await
            .expect_err("exhausted");
        assert_eq!(
            err,
            LedgerError::Insufficient {
                needed: 50,
                available: 0
            }
        );
        ledger.settle(&a, 200).await.expect("settle");
        ledger.release(&b).await.expect("release");
        // 100 of room again, on this node's lease: too small for 150, so it
        // goes back, and the control plane has no more.
        let err = ledger
            .reserve(&ctx("bot"), 150, "x")
            .await
            .expect_err("too big");
        assert_eq!(
            err,
            LedgerError::Insufficient {
                needed: 150,
                available: 100
            }
        );
        assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 200)]);
        ledger
            .reserve(&ctx("bot"), 100, "x")
            .await
            .expect("a lease of what is left");
        assert_eq!(cp.books().asked.last(), Some(&(1_000, 100)));
        // An agent the control plane does not know has no account.
        assert_eq!(
            ledger.reserve(&ctx("ghost"), 1, "x").await,
            Err(LedgerError::UnknownAccount("ghost".into()))
        );
        assert_eq!(
            ledger.remaining(&ctx("ghost")).await,
            Err(BudgetError::NotConfigured)
        );
        assert!(cp.books().violations.is_empty());
    }

    #[tokio::test]
    async fn a_refusal_returns_idle_leases_and_asks_again() {
        let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            chunk: 400,
            ..patient()
        });
        let r = ledger
            .reserve(&ctx("bot"), 100, "x")
            .await
            .expect("reserve");
        ledger.settle(&r, 100).await.expect("settle");
        // 300 of room here, 600 at the control plane: 700 fits neither,
        // until the idle lease goes back.
        let big = ledger
            .reserve(&ctx("bot"), 700, "x")
            .await
            .expect("after a return");
        assert_eq!(big.amount, 700);
        let books = cp.books();
        // The small lease goes back (by the maintenance task, or after the
        // refusal) before the big one is granted.
        assert_eq!(books.asked.first(), Some(&(400, 100)));
        assert_eq!(books.asked.last(), Some(&(700, 700)));
        assert_eq!(books.returns, vec![("lse_0".to_owned(), 100)]);
        assert!(books.violations.is_empty());
    }

    #[tokio::test]
    async fn a_lease_too_small_for_the_next_call_goes_back_when_its_holds_end() {
        let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            chunk: 100,
            ..patient()
        });
        let first = ledger.reserve(&ctx("bot"), 48, "x").await.expect("1");
        let second = ledger.reserve(&ctx("bot"), 48, "x").await.expect("2");
        // 4 left: the third call takes a new lease, and the first one is
        // retired rather than kept idle for the idle timeout (600 s here).
        let third = ledger.reserve(&ctx("bot"), 48, "x").await.expect("3");
        assert_eq!(cp.books().asked.len(), 2);
        let small = ledger.reserve(&ctx("bot"), 4, "x").await.expect("small");
        ledger.release(&small).await.expect("release");
        let leases = ledger.snapshot();
        assert_eq!(leases.len(), 2);
        assert!(
            !leases
                .iter()
                .find(|l| l.lease_id == "lse_0")
                .expect("lse_0")
                .usable
        );
        assert_eq!(
            leases
                .iter()
                .find(|l| l.lease_id == "lse_1")
                .expect("lse_1")
                .held,
            48
        );
        ledger.settle(&first, 30).await.expect("settle");
        assert!(cp.books().returns.is_empty(), "a hold is still open on it");
        ledger.settle(&second, 30).await.expect("settle");
        until("the retired lease returned", || {
            !cp.books().returns.is_empty()
        })
        .await;
        assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 60)]);
        ledger.settle(&third, 30).await.expect("settle");
        assert_eq!(
            ledger.snapshot().len(),
            1,
            "the new lease stays for the next call"
        );
    }

    #[tokio::test]
    async fn an_idle_lease_goes_back_by_itself() {
        let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            idle_return: Duration::from_millis(300),
            ..patient()
        });
        let r = ledger
            .reserve(&ctx("bot"), 100, "x")
            .await
            .expect("reserve");
        // Open reservations keep it, however long.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(ledger.snapshot().len(), 1);
        assert!(cp.books().returns.is_empty());
        ledger.settle(&r, 42).await.expect("settle");
        until("the idle return", || !cp.books().returns.is_empty()).await;
        assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 42)]);
        assert!(ledger.snapshot().is_empty());
        let acc = cp.account("bot");
        assert_eq!((acc.spent, acc.reserved, acc.available()), (42, 0, 4_958));
    }

    #[tokio::test]
    async fn no_hold_is_taken_near_expiry_and_a_full_lease_goes_back() {
        // 2 s leases, 1 s margin: usable for the first second.
        let cp = Mock::start(2_000, &[("bot", 5_000, Some("main"))]).await;
        let ledger = cp.ledger(patient());
        let r = ledger
            .reserve(&ctx("bot"), 100, "x")
            .await
            .expect("reserve");
        ledger.settle(&r, 100).await.expect("settle");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let r = ledger
            .reserve(&ctx("bot"), 100, "x")
            .await
            .expect("a new lease");
        assert_eq!(cp.books().asked.len(), 2, "the old lease is not used");
        // The old one, unusable and idle, goes back before it expires.
        until("the old lease returned", || !cp.books().returns.is_empty()).await;
        assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 100)]);
        assert_eq!(
            cp.books().leases["lse_0"].answer.as_ref().expect("answer")["status"],
            "returned"
        );
        ledger.release(&r).await.expect("release");

        // A lease with no room left goes back as soon as its last hold ends.
        let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            chunk: 100,
            ..patient()
        });
        let r = ledger
            .reserve(&ctx("bot"), 100, "x")
            .await
            .expect("reserve");
        ledger.settle(&r, 100).await.expect("settle");
        until("the full lease returned", || !cp.books().returns.is_empty()).await;
        assert_eq!(cp.account("bot").spent, 100);
    }

    #[tokio::test]
    async fn a_reservation_outliving_its_lease_charges_nothing_locally_and_is_reported() {
        // 600 ms leases; the margin is capped at half of that.
        let cp = Mock::start(600, &[("bot", 1_000, Some("main"))]).await;
        let ledger = cp.ledger(patient());
        let slow = ledger
            .reserve(&ctx("bot"), 200, "x")
            .await
            .expect("reserve");
        // The lease expires on the control plane: its tokens are back.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(cp.account("bot").reserved, 0);
        assert!(ledger.snapshot()[0].expired);
        // Someone else spends most of the budget meanwhile.
        let other = ledger
            .reserve(&ctx("bot"), 900, "x")
            .await
            .expect("new lease");
        ledger.settle(&other, 900).await.expect("settle");
        // That lease goes back when it nears its expiry: 900 spent.
        until("the second lease returned", || {
            cp.books().returns.len() == 1
        })
        .await;
        assert_eq!(cp.books().returns[0], ("lse_1".to_owned(), 900));
        // The late settlement is not covered locally...
        let s = ledger.settle(&slow, 150).await.expect("settle");
        assert_eq!(
            s,
            Settlement {
                charged: 0,
                uncovered: 150
            }
        );
        // ...but reported: the control plane charges what the budget still
        // has, never more.
        until("both returned", || cp.books().returns.len() == 2).await;
        let acc = cp.account("bot");
        assert_eq!((acc.spent, acc.reserved), (1_000, 0), "{acc:?}");
        let late = cp.books().leases["lse_0"].answer.clone().expect("answer");
        assert_eq!(late["status"], "expired");
        assert_eq!(late["charged"], 100);
        assert_eq!(late["uncovered"], 50);
        assert!(cp.books().violations.is_empty());
    }

    #[tokio::test]
    async fn usage_above_the_hold_takes_free_room_only() {
        let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            chunk: 300,
            ..patient()
        });
        let a = ledger.reserve(&ctx("bot"), 100, "x").await.expect("a");
        let b = ledger.reserve(&ctx("bot"), 100, "x").await.expect("b");
        // 100 free in the lease: a's overrun takes that, not b's hold.
        let s = ledger.settle(&a, 250).await.expect("settle a");
        assert_eq!(
            s,
            Settlement {
                charged: 200,
                uncovered: 50
            }
        );
        let s = ledger.settle(&b, 100).await.expect("settle b");
        assert_eq!(
            s,
            Settlement {
                charged: 100,
                uncovered: 0
            }
        );
        // All 350 are reported; the control plane covers the excess from
        // the budget.
        until("the overdrawn lease returned", || {
            !cp.books().returns.is_empty()
        })
        .await;
        assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 350)]);
        assert_eq!(cp.account("bot").spent, 350);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_never_exceed_what_was_granted() {
        const BUDGET: u64 = 20_000;
        let cp = Mock::start(
            1_500,
            &[("bot", BUDGET, Some("main")), ("other", 5_000, None)],
        )
        .await;
        let ledger = Arc::new(cp.ledger(LeaseSettings {
            chunk: 700,
            idle_return: Duration::from_millis(100),
            expiry_margin: Duration::from_millis(300),
            timeout: Duration::from_secs(5),
            open_grace: Duration::from_secs(5),
        }));
        let charged = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..48u64 {
            let ledger = Arc::clone(&ledger);
            let charged = Arc::clone(&charged);
            tasks.push(tokio::spawn(async move {
                let agent = if t % 8 == 0 { "other" } else { "bot" };
                for i in 0..60u64 {
                    let amount = 1 + (t * 37 + i * 11) % 250;
                    match ledger.reserve(&ctx(agent), amount, "x").await {
                        Ok(r) => {
                            // Each lease's holds and spending stay within
                            // its grant while others reserve.
                            for l in ledger.snapshot() {
                                assert!(l.spent + l.held <= l.granted, "{l:?}");
                            }
                            tokio::time::sleep(Duration::from_millis(i % 3)).await;
                            if i % 5 == 0 {
                                ledger.release(&r).await.expect("release");
                            } else {
                                let s = ledger.settle(&r, amount / 2).await.expect("settle");
                                assert_eq!(s.uncovered, 0);
                                if agent == "bot" {
                                    charged.fetch_add(s.charged, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(LedgerError::Insufficient { needed, available }) => {
                            assert!(available < needed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let report = ledger.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report.unreturned, 0);
        let books = cp.books();
        assert!(books.violations.is_empty(), "{:?}", books.violations);
        let acc = &books.accounts["bot"];
        assert_eq!(acc.reserved, 0);
        assert_eq!(
            acc.spent,
            charged.load(Ordering::Relaxed),
            "every charge reached the control plane once"
        );
        assert!(acc.spent <= BUDGET);
        assert!(
            books.asked.len() > 10,
            "leases came and went: {}",
            books.asked.len()
        );
    }

    #[tokio::test]
    async fn a_control_plane_that_fails_is_unavailable_and_returns_are_retried() {
        // Nothing listens here.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let ledger = LeaseLedger::new(&dead, None, "node-t", patient()).expect("ledger");
        assert!(matches!(
            ledger.reserve(&ctx("bot"), 10, "x").await,
            Err(LedgerError::Storage(m)) if m.contains("did not answer")
        ));
        assert!(matches!(
            ledger.remaining(&ctx("bot")).await,
            Err(BudgetError::Unavailable(_))
        ));
        assert!(matches!(
            ledger.request(&ctx("bot"), 10, "r".into()).await,
            Err(BudgetError::Unavailable(_))
        ));
        assert!(matches!(
            ledger.poll_request(&ctx("bot"), "req_1".into()).await,
            Err(BudgetError::Unavailable(_))
        ));

        let cp = Mock::start(60_000, &[("bot", 5_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            idle_return: Duration::from_millis(100),
            timeout: Duration::from_millis(400),
            ..patient()
        });
        let r = ledger.reserve(&ctx("bot"), 10, "x").await.expect("reserve");
        // 5xx: unavailable, and the reason names no URL.
        cp.books().fail = Some(503);
        let err = ledger
            .reserve(&ctx("other"), 10, "x")
            .await
            .expect_err("503");
        assert_eq!(
            err,
            LedgerError::Storage("the budget authority answered 503".into())
        );
        assert_eq!(
            ledger.remaining(&ctx("bot")).await,
            Err(BudgetError::Unavailable(
                "the budget authority answered 503".into()
            ))
        );
        // The lease's return fails while the control plane is down, and is
        // retried until it goes through.
        ledger.settle(&r, 7).await.expect("settle");
        until("a failed return", || ledger.pending_returns() == 1).await;
        cp.books().fail = None;
        // A retry leaves the pending queue before its answer arrives: wait
        // for the control plane to have it, then for the queue to be empty.
        until("the retried return", || cp.account("bot").spent == 7).await;
        until("no return pending", || ledger.pending_returns() == 0).await;
        assert_eq!(cp.account("bot").spent, 7);
        // Too slow: a timeout, not a hang.
        cp.books().delay = Some(Duration::from_secs(2));
        let started = Instant::now();
        assert!(matches!(
            ledger.reserve(&ctx("bot"), 10, "x").await,
            Err(LedgerError::Storage(m)) if m.contains("timed out")
        ));
        assert!(started.elapsed() < Duration::from_millis(1_500));
    }

    #[tokio::test]
    async fn token_requests_map_the_contract_s_answers() {
        let cp = Mock::start(60_000, &[("main", 5_000, None), ("bot", 100, Some("main"))]).await;
        let ledger = cp.ledger(patient());
        let req = ledger
            .request(&ctx("bot"), 50, "more please".into())
            .await
            .expect("request");
        assert_eq!((req.amount, req.status), (50, RequestStatus::Pending));
        assert_eq!(req.reason, "more please");
        let polled = ledger
            .poll_request(&ctx("bot"), req.id.clone())
            .await
            .expect("poll");
        assert_eq!(
            (polled.id.as_str(), polled.status),
            (req.id.as_str(), RequestStatus::Approved)
        );
        // Another agent's request, or none: unknown.
        assert_eq!(
            ledger.poll_request(&ctx("main"), req.id.clone()).await,
            Err(BudgetError::UnknownRequest)
        );
        assert_eq!(
            ledger
                .poll_request(&ctx("bot"), "../budgets/bot".into())
                .await,
            Err(BudgetError::UnknownRequest),
            "the id is one escaped path segment"
        );
        assert_eq!(
            ledger.request(&ctx("main"), 50, "x".into()).await,
            Err(BudgetError::NoParent)
        );
        assert_eq!(
            ledger.request(&ctx("bot"), 0, "x".into()).await,
            Err(BudgetError::InvalidAmount(500))
        );
        assert_eq!(
            ledger.request(&ctx("bot"), 501, "x".into()).await,
            Err(BudgetError::InvalidAmount(500))
        );
    }

    #[tokio::test]
    async fn a_reserve_dropped_at_any_await_leaks_no_lease_and_no_hold() {
        use futures_util::FutureExt;
        // Each call to the control plane takes 40 ms, half of it after the
        // grant or return took effect; the reserve calls are dropped before,
        // during and after the leftover's return, the lease requests (a
        // refused one and the one asked again) and the wait for the agent's
        // turn.
        for drop_after_ms in [0u64, 1, 15, 30, 50, 70, 90, 120, 160, 400] {
            let cp = Mock::start(60_000, &[("bot", 500, Some("main"))]).await;
            let ledger = cp.ledger(LeaseSettings {
                chunk: 300,
                idle_return: Duration::from_millis(150),
                ..patient()
            });
            let first = ledger.reserve(&ctx("bot"), 200, "x").await.expect("first");
            ledger.settle(&first, 120).await.expect("settle");
            // 180 of room left here, 200 at the control plane: 250 needs the
            // leftover back and a new lease.
            cp.books().delay = Some(Duration::from_millis(20));
            cp.books().answer_delay = Some(Duration::from_millis(20));
            let bot = ctx("bot");
            let a = ledger.reserve(&bot, 250, "x");
            let b = ledger.reserve(&bot, 250, "x");
            let outcomes = if drop_after_ms == 0 {
                // Polled once: the acquisition has just been handed to the
                // ledger's task.
                vec![a.now_or_never(), b.now_or_never()]
            } else {
                let d = Duration::from_millis(drop_after_ms);
                let (a, b) = tokio::join!(tokio::time::timeout(d, a), tokio::time::timeout(d, b));
                vec![a.ok(), b.ok()]
            };
            let mut charged = 120;
            for outcome in outcomes.into_iter().flatten() {
                match outcome {
                    Ok(r) => {
                        let s = ledger.settle(&r, 100).await.expect("settle");
                        assert_eq!(s.uncovered, 0);
                        charged += s.charged;
                    }
                    Err(LedgerError::Insufficient { .. }) => {}
                    Err(e) => panic!("after {drop_after_ms} ms: {e}"),
                }
            }
            cp.books().delay = None;
            cp.books().answer_delay = None;
            until("every lease back and no hold left", || cp.all_back(&ledger)).await;
            let returned = cp.returned_once();
            assert_eq!(returned["lse_0"], 120, "after {drop_after_ms} ms");
            assert_eq!(
                returned.values().sum::<u64>(),
                charged,
                "after {drop_after_ms} ms: {returned:?}"
            );
            let acc = cp.account("bot");
            assert_eq!(
                (acc.spent, acc.reserved),
                (charged, 0),
                "after {drop_after_ms} ms"
            );
            // The agent is still served.
            let r = ledger.reserve(&ctx("bot"), 10, "x").await.expect("again");
            ledger.release(&r).await.expect("release");
        }
    }

    #[tokio::test]
    async fn a_reserve_dropped_while_leftovers_go_back_releases_the_new_hold() {
        let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            chunk: 300,
            idle_return: Duration::from_millis(300),
            ..patient()
        });
        let first = ledger.reserve(&ctx("bot"), 200, "x").await.expect("first");
        ledger.settle(&first, 120).await.expect("settle");
        cp.books().return_delay = Some(Duration::from_millis(500));
        let dropped = tokio::time::timeout(
            Duration::from_millis(150),
            ledger.reserve(&ctx("bot"), 250, "x"),
        )
        .await;
        assert!(dropped.is_err(), "the call was dropped");
        {
            let books = cp.books();
            assert_eq!(books.asked.len(), 2, "the new lease was granted");
            assert!(books.returns.is_empty(), "the leftover is still going back");
        }
        // The leftover's return completes without its caller, and the new
        // lease's hold is released, so the lease goes back when idle.
        until("both leases back", || cp.all_back(&ledger)).await;
        let returned = cp.returned_once();
        assert_eq!(
            returned.into_iter().collect::<Vec<_>>(),
            vec![("lse_0".to_owned(), 120), ("lse_1".to_owned(), 0)]
        );
        let acc = cp.account("bot");
        assert_eq!((acc.spent, acc.reserved), (120, 0));
        let report = ledger.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report, ShutdownReport::default());
    }

    #[tokio::test]
    async fn returns_under_way_at_shutdown_are_waited_for_and_counted() {
        let cp = Mock::start(60_000, &[("bot", 1_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            chunk: 300,
            ..patient()
        });
        let first = ledger.reserve(&ctx("bot"), 200, "x").await.expect("first");
        ledger.settle(&first, 120).await.expect("settle");
        cp.books().return_delay = Some(Duration::from_millis(300));
        // Dropped while the leftover goes back; shutdown comes meanwhile.
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            ledger.reserve(&ctx("bot"), 250, "x"),
        )
        .await;
        assert!(dropped.is_err());
        let report = ledger.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            report,
            ShutdownReport {
                returned: 2,
                unreturned: 0
            }
        );
        let returned = cp.returned_once();
        assert_eq!(
            returned.into_iter().collect::<Vec<_>>(),
            vec![("lse_0".to_owned(), 120), ("lse_1".to_owned(), 0)]
        );
        assert_eq!(cp.account("bot").reserved, 0);
    }

    #[tokio::test]
    async fn a_lease_held_open_past_its_expiry_goes_back_after_the_grace_period() {
        // 600 ms leases, 200 ms of grace.
        let cp = Mock::start(600, &[("bot", 1_000, Some("main"))]).await;
        let ledger = cp.ledger(LeaseSettings {
            open_grace: Duration::from_millis(200),
            ..patient()
        });
        let started = Instant::now();
        // A reservation whose caller hangs, and one that ends.
        let stuck = ledger.reserve(&ctx("bot"), 100, "x").await.expect("stuck");
        let done = ledger.reserve(&ctx("bot"), 50, "x").await.expect("done");
        ledger.settle(&done, 40).await.expect("settle");
        tokio::time::sleep(Duration::from_millis(650)).await;
        assert!(ledger.snapshot()[0].expired);
        assert!(cp.books().returns.is_empty(), "within the grace period");
        until("the expired lease returned", || {
            !cp.books().returns.is_empty()
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(800));
        assert_eq!(cp.books().returns, vec![("lse_0".to_owned(), 40)]);
        assert!(ledger.snapshot().is_empty(), "the lease is forgotten");
        assert_eq!(ledger.open_reservations(), 1);
        // The late settlement charges nothing and is reported uncovered.
        assert_eq!(
            ledger.settle(&stuck, 70).await,
            Ok(Settlement {
                charged: 0,
                uncovered: 70
            })
        );
        assert_eq!(ledger.open_reservations(), 0);
        let returned = cp.returned_once();
        assert_eq!(returned["lse_0"], 40);
        let late = cp.books().leases["lse_0"].answer.clone().expect("answer");
        assert_eq!(late["status"], "expired");
        let acc = cp.account("bot");
        assert_eq!((acc.spent, acc.reserved), (40, 0));
    }

    #[tokio::test]
    async fn lease_lifetimes_are_capped_and_a_dead_lease_goes_straight_back() {
        let cp = Mock::start(
            60_000,
            &[("bot", 1_000, Some("main")), ("other", 1_000, None)],
        )
        .await;
        let ledger = cp.ledger(patient());
        // A lifetime that would overflow the clock: capped at an hour.
        cp.books().expires_override = Some(i64::MAX);
        let r = ledger.reserve(&ctx("bot"), 100, "x").await.expect("capped");
        let lease = ledger.snapshot().pop().expect("lease");
        assert!(lease.usable && !lease.expired);
        assert!(lease.expires_in <= MAX_LIFETIME, "{lease:?}");
        assert!(lease.expires_in > MAX_LIFETIME - Duration::from_secs(60));
        ledger.settle(&r, 10).await.expect("settle");
        // No lifetime left (the past, the earliest time there is): unusable,
        // and returned at once rather than kept.
        for (i, past) in [now_ms() - 1_000, 0, i64::MIN].into_iter().enumerate() {
            cp.books().expires_override = Some(past);
            assert!(matches!(
                ledger.reserve(&ctx("other"), 100, "x").await,
                Err(LedgerError::Storage(m)) if m.contains("unusable")
            ));
            until("the dead lease returned", || {
                cp.books().returns.len() == i + 1
            })
            .await;
            assert_eq!(cp.books().returns[i], (format!("lse_{}", i + 1), 0));
        }
        assert_eq!(ledger.snapshot().len(), 1, "only the capped lease is kept");
        let report = ledger.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            report,
            ShutdownReport {
                returned: 1,
                unreturned: 0
            }
        );
        let returned = cp.returned_once();
        assert_eq!(returned["lse_0"], 10);
    }

    #[tokio::test]
    async fn a_wrong_token_is_unavailable_not_a_budget_answer() {
        let cp = Mock::start(60_000, &[("bot", 100, Some("main"))]).await;
        let ledger =
            LeaseLedger::new(&cp.url, Some("wrong".into()), "node-t", patient()).expect("ledger");
        assert_eq!(
            ledger.reserve(&ctx("bot"), 10, "x").await,
            Err(LedgerError::Storage(
                "the budget authority answered 401".into()
            ))
        );
        assert!(LeaseLedger::new("not a url", None, "n", patient()).is_err());
        assert!(LeaseLedger::new("mailto:x@y", None, "n", patient()).is_err());
    }
}
