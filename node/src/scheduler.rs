//! Fair run scheduling across tenants.
//!
//! The node is shared: one tenant flooding it with runs must not starve the
//! others, and a flood must not grow memory without bound. So every run
//! waits in its tenant's bounded FIFO queue, tenants take turns for the
//! execution slots (round robin), each tenant is capped at
//! [`SchedulerLimits::per_tenant_concurrency`] running runs, and a full
//! queue refuses new runs with a suggested retry delay instead of buffering
//! them.
//!
//! The flow: [`Scheduler::enqueue`] returns a [`Ticket`], a future that
//! resolves to a [`Permit`] when the run may execute (or to [`Cancelled`]).
//! Holding the permit holds one execution slot; dropping it frees the slot
//! and dispatches the next run. Dropping a ticket that is still waiting
//! gives its queue place back. Both are done in `Drop`, so no path (error,
//! client gone, panic) leaks a slot or a queue place.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
// tokio's clock so that tests with a paused clock are deterministic; outside
// such tests it is `std::time::Instant`.
use tokio::time::Instant;

/// Run-time guess before any run has finished, for [`Refused::QueueFull`]'s
/// `retry_after`.
const INITIAL_MEAN_RUN: Duration = Duration::from_secs(1);
/// Bounds of the suggested `retry_after`: never hammer sooner than a second,
/// never send a client away for longer than a few minutes on an estimate.
const MIN_RETRY_AFTER_SECS: f64 = 1.0;
const MAX_RETRY_AFTER_SECS: f64 = 300.0;

/// Concurrency and queue limits of a [`Scheduler`]. Changeable at run time
/// with [`Scheduler::set_limits`].
///
/// A zero in any field is treated as one: a scheduler that can never run or
/// never queue anything is a misconfiguration, not a mode. Missing fields
/// take their [`Default`] when deserialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerLimits {
    /// Runs executing at once on the node (all tenants).
    pub concurrency: usize,
    /// Runs executing at once for one tenant.
    pub per_tenant_concurrency: usize,
    /// Runs waiting (not yet executing) for one tenant.
    pub queue_per_tenant: usize,
    /// Runs waiting on the node (all tenants).
    pub queue_total: usize,
}

impl Default for SchedulerLimits {
    /// `concurrency` is the machine's available parallelism (runs are
    /// CPU-bound Wasm); a tenant may take half of it, rounded up, so a
    /// flooding tenant leaves the other half to newcomers (runs are not
    /// preempted, so fairness alone would not free slots quickly). Queues:
    /// 256 runs per tenant, 4096 in all.
    fn default() -> Self {
        let concurrency = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self {
            concurrency,
            per_tenant_concurrency: concurrency.div_ceil(2),
            queue_per_tenant: 256,
            queue_total: 4096,
        }
    }
}

impl SchedulerLimits {
    /// Zeros become one (see the type's docs).
    fn normalized(self) -> Self {
        Self {
            concurrency: self.concurrency.max(1),
            per_tenant_concurrency: self.per_tenant_concurrency.max(1),
            queue_per_tenant: self.queue_per_tenant.max(1),
            queue_total: self.queue_total.max(1),
        }
    }
}

/// Which queue was full when [`Scheduler::enqueue`] refused a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueScope {
    /// The tenant's own queue ([`SchedulerLimits::queue_per_tenant`]).
    Tenant,
    /// The node's total ([`SchedulerLimits::queue_total`]).
    Node,
}

impl fmt::Display for QueueScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tenant => "tenant",
            Self::Node => "node",
        })
    }
}

/// Why [`Scheduler::enqueue`] did not accept a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A queue is full. `retry_after` estimates when there will be room: the
    /// time for that queue to drain at the observed mean run time, in whole
    /// seconds, between 1 s and 5 min.
    #[error("the {scope} run queue is full; retry after {}s", .retry_after.as_secs())]
    QueueFull {
        /// The queue that was full.
        scope: QueueScope,
        /// Suggested delay before retrying (an HTTP `Retry-After`).
        retry_after: Duration,
    },
    /// The scheduler was closed ([`Scheduler::close`]): the node is shutting
    /// down.
    #[error("the node is shutting down")]
    Closed,
}

impl Refused {
    /// The suggested retry delay, if retrying can help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::QueueFull { retry_after, .. } => Some(*retry_after),
            Self::Closed => None,
        }
    }
}

/// Why a [`Ticket`] resolved without a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Cancelled {
    /// The agent's queued runs were cancelled ([`Scheduler::cancel_agent`]).
    #[error("the agent's queued runs were cancelled")]
    Agent,
    /// The scheduler was closed while the run was queued
    /// ([`Scheduler::close`]).
    #[error("the node is shutting down")]
    Shutdown,
}

/// What a queued run's ticket eventually receives.
type Outcome = Result<Permit, Cancelled>;

/// One queued run.
struct Entry {
    /// Unique and increasing, so a tenant's queue is sorted by it.
    id: u64,
    agent: Arc<str>,
    tx: oneshot::Sender<Outcome>,
    enqueued_at: Instant,
}

/// A tenant with queued or running runs (others are forgotten, which keeps
/// memory proportional to the work in flight).
#[derive(Default)]
struct Tenant {
    /// FIFO: entries are taken from the front, except that entries of paused
    /// agents are skipped and keep their place.
    queue: VecDeque<Entry>,
    running: usize,
}

/// A run chosen by [`State::select`], handed its permit after unlocking.
struct Grant {
    tx: oneshot::Sender<Outcome>,
    tenant: Arc<str>,
    agent: Arc<str>,
    waited: Duration,
}

struct State {
    limits: SchedulerLimits,
    closed: bool,
    next_id: u64,
    tenants: HashMap<Arc<str>, Tenant>,
    /// Tenants whose queue is not empty, in turn order. Invariant: a tenant
    /// is in the ring exactly once if its queue is non-empty, else not at all.
    ring: VecDeque<Arc<str>>,
    /// Paused agents. Kept until resumed, whether or not they have runs.
    paused: HashSet<Arc<str>>,
    running: usize,
    queued: usize,
    /// Moving average of how long permits are held, for `retry_after`.
    mean_run: Duration,
}

impl State {
    /// Queues a run (the part of [`Scheduler::enqueue`] under the lock).
    fn admit(
        &mut self,
        tenant: &str,
        agent: &str,
        tx: oneshot::Sender<Outcome>,
    ) -> Result<(Arc<str>, u64), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        let queued_here = self.tenants.get(tenant).map_or(0, |t| t.queue.len());
        let scope = if queued_here >= self.limits.queue_per_tenant {
            Some(QueueScope::Tenant)
        } else if self.queued >= self.limits.queue_total {
            Some(QueueScope::Node)
        } else {
            None
        };
        if let Some(scope) = scope {
            let retry_after = self.retry_after(scope, tenant);
            tracing::debug!(tenant, agent, %scope, ?retry_after, "run refused: queue full");
            return Err(Refused::QueueFull { scope, retry_after });
        }
        let key = self
            .tenants
            .get_key_value(tenant)
            .map_or_else(|| Arc::from(tenant), |(k, _)| Arc::clone(k));
        let id = self.next_id;
        self.next_id += 1;
        let t = self.tenants.entry(Arc::clone(&key)).or_default();
        if t.queue.is_empty() {
            self.ring.push_back(Arc::clone(&key));
        }
        t.queue.push_back(Entry {
            id,
            agent: Arc::from(agent),
            tx,
            enqueued_at: Instant::now(),
        });
        self.queued += 1;
        Ok((key, id))
    }

    /// Picks the runs to start now, updating the counts as if they started.
    ///
    /// This is deficit round robin in which every run costs one quantum, so
    /// it reduces to plain round robin: each visit to a tenant that is under
    /// its cap and has a runnable (not paused) run grants exactly one run and
    /// sends the tenant to the back of the ring; a tenant that cannot run is
    /// passed over without banking credit. If runs ever get weights (say,
    /// expected fuel), a per-tenant deficit counter belongs here.
    fn select(&mut self, now: Instant) -> Vec<Grant> {
        let mut grants = Vec::new();
        'slots: while self.running < self.limits.concurrency {
            // At most one full turn of the ring per slot: if nobody can run,
            // stop.
            for _ in 0..self.ring.len() {
                let Some(key) = self.ring.pop_front() else {
                    break 'slots;
                };
                let Some(tenant) = self.tenants.get_mut(&key) else {
                    // Unreachable by the ring invariant; dropping the key
                    // restores it.
                    continue;
                };
                if tenant.running < self.limits.per_tenant_concurrency {
                    // Linear in the tenant's queue (bounded) only when paused
                    // agents' runs sit at its front.
                    let pos = tenant
                        .queue
                        .iter()
                        .position(|e| !self.paused.contains(&e.agent));
                    if let Some(entry) = pos.and_then(|p| tenant.queue.remove(p)) {
                        tenant.running += 1;
                        self.running += 1;
                        self.queued -= 1;
                        if !tenant.queue.is_empty() {
                            self.ring.push_back(Arc::clone(&key));
                        }
                        grants.push(Grant {
                            tx: entry.tx,
                            tenant: key,
                            agent: entry.agent,
                            waited: now.saturating_duration_since(entry.enqueued_at),
                        });
                        continue 'slots;
                    }
                }
                self.ring.push_back(key);
            }
            break;
        }
        grants
    }

    /// Frees one slot of `tenant`. `held` is how long the run held it, if it
    /// ran (a permit that never reached its ticket did not).
    fn release(&mut self, tenant: &str, held: Option<Duration>) {
        self.running = self.running.saturating_sub(1);
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.running = t.running.saturating_sub(1);
            if t.running == 0 && t.queue.is_empty() {
                self.tenants.remove(tenant);
            }
        }
        if let Some(held) = held {
            // Exponential moving average, weight 1/8: follows a change in
            // workload within a few dozen runs without jumping on one outlier.
            self.mean_run = self.mean_run - self.mean_run / 8 + held / 8;
        }
    }

    /// Removes the queued entry `id` of `tenant`, if it is still queued.
    fn remove_entry(&mut self, tenant: &str, id: u64) -> Option<Entry> {
        let t = self.tenants.get_mut(tenant)?;
        let pos = t.queue.binary_search_by_key(&id, |e| e.id).ok()?;
        let entry = t.queue.remove(pos)?;
        self.queued -= 1;
        if t.queue.is_empty() {
            self.ring.retain(|k| &**k != tenant);
            if t.running == 0 {
                self.tenants.remove(tenant);
            }
        }
        Some(entry)
    }

    /// Removes the queued entries `matches` selects, restoring the ring and
    /// tenant invariants, and returns their senders.
    fn remove_where(
        &mut self,
        mut matches: impl FnMut(&Entry) -> bool,
    ) -> Vec<oneshot::Sender<Outcome>> {
        let mut removed = Vec::new();
        for t in self.tenants.values_mut() {
            let before = t.queue.len();
            for entry in std::mem::take(&mut t.queue) {
                if matches(&entry) {
                    removed.push(entry.tx);
                } else {
                    t.queue.push_back(entry);
                }
            }
            self.queued -= before - t.queue.len();
        }
        if !removed.is_empty() {
            let tenants = &self.tenants;
            self.ring
                .retain(|k| tenants.get(k).is_some_and(|t| !t.queue.is_empty()));
            self.tenants
                .retain(|_, t| t.running > 0 || !t.queue.is_empty());
        }
        removed
    }

    /// Suggested delay after a refusal: how long the full queue takes to
    /// drain at the observed mean run time.
    fn retry_after(&self, scope: QueueScope, tenant: &str) -> Duration {
        let (ahead, slots) = match scope {
            QueueScope::Tenant => (
                self.tenants.get(tenant).map_or(0, |t| t.queue.len()),
                self.limits
                    .per_tenant_concurrency
                    .min(self.limits.concurrency),
            ),
            QueueScope::Node => (self.queued, self.limits.concurrency),
        };
        let secs = self.mean_run.as_secs_f64() * ahead as f64 / slots.max(1) as f64;
        Duration::from_secs_f64(
            secs.clamp(MIN_RETRY_AFTER_SECS, MAX_RETRY_AFTER_SECS)
                .ceil(),
        )
    }
}

/// Queues runs per tenant and hands out execution slots fairly.
///
/// Shared as an `Arc`: tickets and permits keep a reference so that their
/// `Drop` can give back what they hold.
pub struct Scheduler {
    state: Mutex<State>,
    /// Woken whenever the running count drops to zero ([`Self::idle`]).
    idle: Notify,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Scheduler")
            .field("limits", &st.limits)
            .field("closed", &st.closed)
            .field("running", &st.running)
            .field("queued", &st.queued)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler with `limits` (zeros read as one).
    pub fn new(limits: SchedulerLimits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                limits: limits.normalized(),
                closed: false,
                next_id: 0,
                tenants: HashMap::new(),
                ring: VecDeque::new(),
                paused: HashSet::new(),
                running: 0,
                queued: 0,
                mean_run: INITIAL_MEAN_RUN,
            }),
            idle: Notify::new(),
        })
    }

    /// The state, even if a thread panicked while holding the lock: critical
    /// sections only do bookkeeping that cannot panic short of a bug, and
    /// refusing to schedule forever would be worse.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a run of `agent` for `tenant`. The run may start as soon as the
    /// returned ticket resolves; it is dispatched right away if a slot is
    /// free and it is the tenant's turn.
    ///
    /// Accepts runs of paused agents too (they wait until resumed); refusing
    /// those is the API's decision.
    ///
    /// # Errors
    /// [`Refused::QueueFull`] if the tenant's queue or the node's is full,
    /// [`Refused::Closed`] after [`Self::close`].
    pub fn enqueue(self: &Arc<Self>, tenant: &str, agent: &str) -> Result<Ticket, Refused> {
        let (tx, rx) = oneshot::channel();
        let (key, id) = self.lock().admit(tenant, agent, tx)?;
        self.dispatch();
        Ok(Ticket {
            scheduler: Arc::clone(self),
            tenant: key,
            id,
            rx,
            done: false,
        })
    }

    /// Starts every run that can start now.
    ///
    /// Permits are created and sent after unlocking: a send fails when the
    /// ticket was dropped meanwhile, and the unsent permit must then give its
    /// slot back without re-entering this function through its `Drop`
    /// (recursion, and a deadlock had the lock been held). Such slots are
    /// released here, and the loop dispatches again.
    fn dispatch(self: &Arc<Self>) {
        loop {
            let grants = self.lock().select(Instant::now());
            if grants.is_empty() {
                return;
            }
            let mut unsent = Vec::new();
            for grant in grants {
                let permit = Permit {
                    scheduler: Arc::clone(self),
                    tenant: grant.tenant,
                    agent: grant.agent,
                    waited: grant.waited,
                    started: Instant::now(),
                    timed: true,
                    armed: true,
                };
                if let Err(Ok(mut permit)) = grant.tx.send(Ok(permit)) {
                    permit.armed = false;
                    unsent.push(Arc::clone(&permit.tenant));
                }
            }
            if unsent.is_empty() {
                return;
            }
            let mut st = self.lock();
            for tenant in &unsent {
                st.release(tenant, None);
            }
            // Then loop: the released slots may go to other runs. They did
            // count as running, so `idle` waiters must hear of a zero.
            if st.running == 0 {
                drop(st);
                self.idle.notify_waiters();
            }
        }
    }

    /// Frees the slot a permit held (its `Drop`) and dispatches.
    fn finish(self: &Arc<Self>, tenant: &str, held: Option<Duration>) {
        let now_idle = {
            let mut st = self.lock();
            st.release(tenant, held);
            st.running == 0
        };
        if now_idle {
            self.idle.notify_waiters();
        }
        self.dispatch();
    }

    /// Pauses `agent`: its queued runs keep their place but are passed over
    /// until [`Self::resume`]. Running runs are not affected.
    pub fn pause(&self, agent: &str) {
        self.lock().paused.insert(Arc::from(agent));
    }

    /// Resumes `agent` and dispatches its queued runs. Also the way to forget
    /// the pause of a deleted agent. Does nothing if it was not paused.
    pub fn resume(self: &Arc<Self>, agent: &str) {
        if self.lock().paused.remove(agent) {
            self.dispatch();
        }
    }

    /// Whether `agent` is paused.
    pub fn is_paused(&self, agent: &str) -> bool {
        self.lock().paused.contains(agent)
    }

    /// Removes all queued runs of `agent`; their tickets resolve to
    /// [`Cancelled::Agent`]. Running runs and the pause state are not
    /// affected. Returns how many runs were removed.
    pub fn cancel_agent(&self, agent: &str) -> usize {
        let removed = self.lock().remove_where(|e| &*e.agent == agent);
        let n = removed.len();
        // Outside the lock: waking the waiters is none of its business.
        for tx in removed {
            let _ = tx.send(Err(Cancelled::Agent));
        }
        if n > 0 {
            tracing::debug!(agent, cancelled = n, "queued runs cancelled");
        }
        n
    }

    /// Closes the scheduler for graceful shutdown: from now on
    /// [`Self::enqueue`] returns [`Refused::Closed`], and every queued run is
    /// removed, its ticket resolving to [`Cancelled::Shutdown`] (so close
    /// itself drains the queues; there is no separate step). Runs holding a
    /// permit are not affected; [`Self::idle`] waits for them. Idempotent.
    /// Returns how many queued runs were cancelled.
    pub fn close(&self) -> usize {
        let removed = {
            let mut st = self.lock();
            st.closed = true;
            st.remove_where(|_| true)
        };
        let n = removed.len();
        for tx in removed {
            let _ = tx.send(Err(Cancelled::Shutdown));
        }
        tracing::debug!(cancelled = n, "scheduler closed");
        n
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until no permit is held (returns at once if none is). With
    /// [`Self::close`], the end of a graceful shutdown.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before checking, so a release in between is not
            // missed.
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Replaces the limits (zeros read as one), e.g. on a configuration
    /// reload, and dispatches what the new limits allow. Lowering a limit
    /// never stops running runs nor drops queued ones: it only holds back
    /// dispatch (and refuses new runs) until the counts are back under it.
    pub fn set_limits(self: &Arc<Self>, limits: SchedulerLimits) {
        self.lock().limits = limits.normalized();
        self.dispatch();
    }

    /// The current limits (normalized).
    pub fn limits(&self) -> SchedulerLimits {
        self.lock().limits
    }

    /// Queued runs per tenant, sorted by tenant; only tenants with at least
    /// one queued run are listed (a metrics exporter should reset its gauge
    /// vector before setting these, so emptied queues read zero).
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        let st = self.lock();
        let mut depths: Vec<(String, usize)> = st
            .tenants
            .iter()
            .filter(|(_, t)| !t.queue.is_empty())
            .map(|(k, t)| (k.to_string(), t.queue.len()))
            .collect();
        drop(st);
        depths.sort_unstable();
        depths
    }

    /// Runs holding a permit, all tenants.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// Runs of `tenant` holding a permit.
    pub fn running_for(&self, tenant: &str) -> usize {
        self.lock().tenants.get(tenant).map_or(0, |t| t.running)
    }

    /// Queued runs, all tenants (including those of paused agents).
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// Queued runs of `tenant`.
    pub fn queued_for(&self, tenant: &str) -> usize {
        self.lock().tenants.get(tenant).map_or(0, |t| t.queue.len())
    }
}

/// A queued run: a future resolving to its [`Permit`] when the run may
/// start, or to [`Cancelled`].
///
/// Dropping it while it waits removes the run from the queue; dropping it
/// after a permit was dispatched to it but before it was polled frees that
/// permit's slot. Polling it again after it resolved panics, as for most
/// futures.
pub struct Ticket {
    scheduler: Arc<Scheduler>,
    tenant: Arc<str>,
    id: u64,
    rx: oneshot::Receiver<Outcome>,
    /// Resolved: nothing left to give back.
    done: bool,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Future for Ticket {
    type Output = Result<Permit, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "Ticket polled after it resolved");
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => {
                self.done = true;
                // A sender dropped without sending: unreachable (every path
                // that removes an entry sends), but shutdown is the honest
                // reading.
                Poll::Ready(outcome.unwrap_or(Err(Cancelled::Shutdown)))
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let removed = self.scheduler.lock().remove_entry(&self.tenant, self.id);
        if removed.is_none() {
            // Already dispatched (or cancelled). Closing makes a send still
            // in flight fail, so the dispatcher frees that slot; a permit
            // already delivered is taken and dropped here, freeing it. Either
            // way outside the lock, as a permit's drop takes it.
            self.rx.close();
            if let Ok(Ok(mut permit)) = self.rx.try_recv() {
                // Nothing ran: keep it out of the mean run time.
                permit.timed = false;
            }
        }
        // A removed entry's sender is dropped here, after unlocking.
    }
}

/// The right to execute one run: holds one of the node's slots (and one of
/// its tenant's) until dropped. Dropping it, on any path including a panic,
/// frees the slot and dispatches the next run.
pub struct Permit {
    scheduler: Arc<Scheduler>,
    tenant: Arc<str>,
    agent: Arc<str>,
    waited: Duration,
    started: Instant,
    /// Whether its holding time counts as a run for the mean run time
    /// (not when the ticket was dropped before taking it).
    timed: bool,
    /// False for a permit that never reached its ticket: the dispatcher
    /// frees its slot itself.
    armed: bool,
}

impl Permit {
    /// The run's tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The run's agent.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// How long the run waited in the queue.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("tenant", &self.tenant)
            .field("agent", &self.agent)
            .field("waited", &self.waited)
            .finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            let held = self.timed.then(|| self.started.elapsed());
            self.scheduler.finish(&self.tenant, held);
        }
    }
}

#[cfg(test)]
mod tests;
