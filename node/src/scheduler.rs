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
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt;

    use super::*;

    fn limits(
        concurrency: usize,
        per_tenant: usize,
        queue_per_tenant: usize,
        queue_total: usize,
    ) -> SchedulerLimits {
        SchedulerLimits {
            concurrency,
            per_tenant_concurrency: per_tenant,
            queue_per_tenant,
            queue_total,
        }
    }

    /// The permit if the ticket has resolved to one now (`None` if it
    /// already had); panics on `Cancelled`.
    fn ready(ticket: &mut Ticket) -> Option<Permit> {
        if ticket.done {
            return None;
        }
        ticket
            .now_or_never()
            .map(|r| r.unwrap_or_else(|e| panic!("ticket cancelled: {e}")))
    }

    /// Checks the bookkeeping against the queues: counts add up, the ring
    /// holds each tenant with queued runs exactly once and nothing else, and
    /// idle tenants are forgotten.
    #[track_caller]
    fn check(s: &Scheduler) {
        let st = s.lock();
        let queued: usize = st.tenants.values().map(|t| t.queue.len()).sum();
        let running: usize = st.tenants.values().map(|t| t.running).sum();
        assert_eq!((st.queued, st.running), (queued, running));
        let mut ring: Vec<&str> = st.ring.iter().map(|k| &**k).collect();
        ring.sort_unstable();
        let mut active: Vec<&str> = st
            .tenants
            .iter()
            .filter(|(_, t)| !t.queue.is_empty())
            .map(|(k, _)| &**k)
            .collect();
        active.sort_unstable();
        assert_eq!(
            ring, active,
            "the ring holds exactly the tenants with queued runs"
        );
        assert!(
            st.tenants
                .values()
                .all(|t| t.running > 0 || !t.queue.is_empty())
        );
        for t in st.tenants.values() {
            assert!(
                t.queue
                    .iter()
                    .zip(t.queue.iter().skip(1))
                    .all(|(a, b)| a.id < b.id)
            );
        }
    }

    fn pending(ticket: &mut Ticket) -> bool {
        ticket.now_or_never().is_none()
    }

    /// With concurrency 1, runs every ticket one at a time and returns their
    /// labels in dispatch order. Asserts exactly one run holds the slot at a
    /// time.
    fn dispatch_order<L: Clone>(mut tickets: Vec<(L, Ticket)>) -> Vec<L> {
        let mut order = Vec::new();
        while !tickets.is_empty() {
            let mut granted: Vec<(usize, Permit)> = Vec::new();
            for (i, (_, t)) in tickets.iter_mut().enumerate() {
                if let Some(p) = ready(t) {
                    granted.push((i, p));
                }
            }
            assert_eq!(granted.len(), 1, "exactly one run may hold the only slot");
            let Some((i, permit)) = granted.pop() else {
                unreachable!()
            };
            let (label, _) = tickets.remove(i);
            order.push(label);
            drop(permit);
        }
        order
    }

    #[test]
    fn fifo_within_a_tenant() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let tickets: Vec<_> = (0..6)
            .map(|i| {
                (
                    i,
                    s.enqueue("t", &format!("agent{}", i % 2)).expect("enqueue"),
                )
            })
            .collect();
        assert_eq!(dispatch_order(tickets), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
    }

    #[test]
    fn tenants_take_turns() {
        let s = Scheduler::new(limits(1, 1, 256, 4096));
        let mut tickets = Vec::new();
        for i in 0..100 {
            tickets.push((("a", i), s.enqueue("a", "flood").expect("enqueue")));
        }
        for i in 0..3 {
            tickets.push((("b", i), s.enqueue("b", "small").expect("enqueue")));
        }
        let order = dispatch_order(tickets);
        let b_positions: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| *t == "b")
            .map(|(pos, _)| pos)
            .collect();
        // a0 was running when b arrived; then a and b alternate.
        assert_eq!(b_positions, vec![2, 4, 6], "order: {order:?}");
        // Each tenant still FIFO.
        let a: Vec<i32> = order
            .iter()
            .filter(|(t, _)| *t == "a")
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(a, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn per_tenant_cap_leaves_slots_to_others() {
        let s = Scheduler::new(limits(4, 2, 16, 64));
        let mut a: Vec<Ticket> = (0..5)
            .map(|_| s.enqueue("a", "x").expect("enqueue"))
            .collect();
        let a_permits: Vec<Permit> = a.iter_mut().filter_map(ready).collect();
        assert_eq!(a_permits.len(), 2, "a is capped although slots are free");
        assert_eq!(
            (s.running(), s.running_for("a"), s.queued_for("a")),
            (2, 2, 3)
        );

        let mut b: Vec<Ticket> = (0..3)
            .map(|_| s.enqueue("b", "y").expect("enqueue"))
            .collect();
        let b_permits: Vec<Permit> = b.iter_mut().filter_map(ready).collect();
        assert_eq!(b_permits.len(), 2);
        assert_eq!((s.running(), s.running_for("b")), (4, 2));

        // A slot freed by a goes to a (b is at its cap), and no further.
        let mut a_permits = a_permits;
        drop(a_permits.pop());
        let next: Vec<Permit> = a.iter_mut().filter_map(ready).collect();
        assert_eq!(next.len(), 1);
        assert_eq!((s.running(), s.running_for("a"), s.queued()), (4, 2, 3));
    }

    #[test]
    fn full_queues_refuse_with_retry_after() {
        let s = Scheduler::new(limits(1, 1, 2, 3));
        let _running = s.enqueue("a", "x").expect("runs at once");
        let _a1 = s.enqueue("a", "x").expect("queued");
        let _a2 = s.enqueue("a", "x").expect("queued");
        match s.enqueue("a", "x") {
            Err(Refused::QueueFull {
                scope: QueueScope::Tenant,
                retry_after,
            }) => {
                assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}");
            }
            other => panic!("expected a full tenant queue, got {other:?}"),
        }
        let _b1 = s.enqueue("b", "y").expect("queued");
        let refused = s.enqueue("b", "y").expect_err("node queue is full");
        assert!(
            matches!(
                refused,
                Refused::QueueFull {
                    scope: QueueScope::Node,
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(
            refused
                .retry_after()
                .is_some_and(|d| d >= Duration::from_secs(1))
        );
        assert_eq!(s.queued(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_follows_observed_run_time() {
        let s = Scheduler::new(limits(1, 1, 4, 64));
        let fill = || -> Vec<Ticket> {
            (0..5)
                .map(|_| s.enqueue("a", "x").expect("enqueue"))
                .collect()
        };

        let queued = fill();
        let refused = s.enqueue("a", "x").expect_err("full");
        // The initial guess of 1 s per run, 4 queued, 1 slot.
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(4)));
        drop(queued);

        // Runs of a minute each move the mean towards a minute.
        for _ in 0..16 {
            let permit = s.enqueue("a", "x").expect("enqueue").await.expect("permit");
            tokio::time::advance(Duration::from_secs(60)).await;
            drop(permit);
        }
        let _queued = fill();
        let refused = s.enqueue("a", "x").expect_err("full");
        // Mean 60 - 59 * (7/8)^16 = 53.03 s, times 4 queued, rounded up.
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(213)));
    }

    #[test]
    fn paused_agent_keeps_its_place_and_others_pass() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let mut blocker = s.enqueue("t", "other").expect("enqueue");
        let blocker = ready(&mut blocker).expect("runs at once");
        s.pause("p");
        assert!(s.is_paused("p"));
        let mut p1 = s.enqueue("t", "p").expect("paused agents still queue");
        let mut q1 = s.enqueue("t", "q").expect("enqueue");
        let mut p2 = s.enqueue("t", "p").expect("enqueue");

        drop(blocker);
        let q = ready(&mut q1).expect("q passes the paused agent");
        assert!(pending(&mut p1) && pending(&mut p2));
        drop(q);
        assert_eq!((s.running(), s.queued()), (0, 2), "paused runs stay queued");
        assert_eq!(s.queue_depths(), vec![("t".to_owned(), 2)]);

        s.resume("p");
        assert!(!s.is_paused("p"));
        let first = ready(&mut p1).expect("resumed in FIFO order");
        assert!(pending(&mut p2));
        drop(first);
        drop(ready(&mut p2).expect("then the second"));
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
    }

    #[test]
    fn cancel_agent_cancels_its_queued_tickets() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let mut blocker = s.enqueue("t", "b").expect("enqueue");
        let blocker = ready(&mut blocker).expect("runs");
        let a1 = s.enqueue("t", "a").expect("enqueue");
        let mut keep = s.enqueue("t", "k").expect("enqueue");
        let a2 = s.enqueue("u", "a").expect("enqueue");

        assert_eq!(s.cancel_agent("a"), 2);
        assert_eq!(s.cancel_agent("a"), 0);
        assert!(matches!(a1.now_or_never(), Some(Err(Cancelled::Agent))));
        assert!(matches!(a2.now_or_never(), Some(Err(Cancelled::Agent))));
        assert!(pending(&mut keep));
        assert_eq!(s.queued(), 1);
        assert_eq!(s.queue_depths(), vec![("t".to_owned(), 1)]);
        check(&s);

        drop(blocker);
        drop(ready(&mut keep).expect("the other agent runs"));
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
        assert!(s.lock().tenants.is_empty());
    }

    #[test]
    fn dropping_a_waiting_ticket_frees_its_queue_place() {
        let s = Scheduler::new(limits(1, 1, 2, 16));
        let mut running = s.enqueue("t", "x").expect("enqueue");
        let permit = ready(&mut running).expect("runs");
        let w1 = s.enqueue("t", "x").expect("enqueue");
        let mut w2 = s.enqueue("t", "x").expect("enqueue");
        assert!(s.enqueue("t", "x").is_err());

        drop(w1);
        assert_eq!(s.queued(), 1);
        check(&s);
        let mut w3 = s.enqueue("t", "x").expect("the freed place");
        drop(permit);
        // w1 is gone, so w2 is next, then w3.
        let p2 = ready(&mut w2).expect("w2 next");
        assert!(pending(&mut w3));
        drop(p2);
        drop(ready(&mut w3).expect("w3"));
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
    }

    #[test]
    fn dropping_an_unpolled_dispatched_ticket_frees_its_slot() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let first = s.enqueue("t", "x").expect("enqueue");
        let mut second = s.enqueue("t", "x").expect("enqueue");
        assert_eq!((s.running(), s.queued()), (1, 1));
        // `first` holds a delivered permit nobody has taken.
        drop(first);
        drop(ready(&mut second).expect("the slot went on to the next run"));
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
    }

    #[test]
    fn a_tenant_emptied_by_a_dropped_ticket_leaves_the_ring() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let mut running = s.enqueue("t", "x").expect("enqueue");
        let permit = ready(&mut running).expect("runs");
        let waiting = s.enqueue("t", "x").expect("enqueue");
        drop(waiting);
        check(&s);
        assert_eq!((s.running_for("t"), s.queued_for("t")), (1, 0));
        // Queued again: one ring entry, not two.
        let mut again = s.enqueue("t", "x").expect("enqueue");
        check(&s);
        drop(permit);
        drop(ready(&mut again).expect("runs"));
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
    }

    /// A ticket dropped between its run's selection and the permit's send
    /// (another thread, in production) makes the send fail: the dispatcher
    /// must give the slot back and move on. Queued here without a ticket to
    /// make that interleaving deterministic.
    #[tokio::test]
    async fn a_permit_that_cannot_be_delivered_gives_its_slot_back() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let mut blocker = s.enqueue("t", "x").expect("enqueue");
        let blocker = ready(&mut blocker).expect("runs");
        let (tx, rx) = oneshot::channel();
        drop(rx);
        s.lock().admit("t", "orphan", tx).expect("admitted");
        let mut next = s.enqueue("u", "y").expect("enqueue");
        check(&s);

        drop(blocker);
        let permit = ready(&mut next).expect("the slot went past the orphan");
        assert_eq!((s.running(), s.queued()), (1, 0));
        check(&s);

        // The same when nothing else waits: the node goes idle.
        let (tx, rx) = oneshot::channel();
        drop(rx);
        s.lock().admit("t", "orphan", tx).expect("admitted");
        let mut idle = Box::pin(s.idle());
        assert!((&mut idle).now_or_never().is_none());
        drop(permit);
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
        assert!(idle.now_or_never().is_some());
    }

    #[test]
    fn dropping_a_permit_dispatches_the_next_even_in_a_panic() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let mut t1 = s.enqueue("t", "x").expect("enqueue");
        let mut t2 = s.enqueue("t", "x").expect("enqueue");
        let mut t3 = s.enqueue("t", "x").expect("enqueue");
        let p1 = ready(&mut t1).expect("first runs");
        assert!(pending(&mut t2));
        drop(p1);
        let p2 = ready(&mut t2).expect("second dispatched on drop");
        assert!(pending(&mut t3));

        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = p2;
            panic!("run failed");
        }));
        assert!(unwound.is_err());
        drop(ready(&mut t3).expect("third dispatched by the unwinding drop"));
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
    }

    #[test]
    fn close_refuses_new_runs_and_cancels_queued_ones() {
        let s = Scheduler::new(limits(1, 1, 16, 16));
        let mut running = s.enqueue("t", "x").expect("enqueue");
        let permit = ready(&mut running).expect("runs");
        let mut waiting: Vec<Ticket> = (0..3)
            .map(|i| {
                s.enqueue(if i == 0 { "t" } else { "u" }, "y")
                    .expect("enqueue")
            })
            .collect();
        s.pause("y");

        assert_eq!(s.close(), 3);
        assert!(s.is_closed());
        assert!(matches!(s.enqueue("t", "x"), Err(Refused::Closed)));
        for t in &mut waiting {
            assert!(matches!(t.now_or_never(), Some(Err(Cancelled::Shutdown))));
        }
        assert_eq!(
            (s.running(), s.queued()),
            (1, 0),
            "running permits are unaffected"
        );
        assert!(s.queue_depths().is_empty());
        drop(permit);
        assert_eq!(s.running(), 0);
        assert_eq!(s.close(), 0);
    }

    #[tokio::test]
    async fn idle_waits_for_running_permits() {
        let s = Scheduler::new(limits(2, 2, 16, 16));
        s.idle().await;
        let p1 = s.enqueue("t", "x").expect("enqueue").await.expect("permit");
        let p2 = s.enqueue("t", "x").expect("enqueue").await.expect("permit");
        let mut idle = Box::pin(s.idle());
        assert!((&mut idle).now_or_never().is_none());
        drop(p1);
        assert!((&mut idle).now_or_never().is_none());
        drop(p2);
        assert!(idle.now_or_never().is_some());
    }

    #[test]
    fn raising_concurrency_dispatches_more_and_lowering_kills_nothing() {
        let s = Scheduler::new(limits(1, 8, 16, 16));
        let mut tickets: Vec<Ticket> = (0..6)
            .map(|i| s.enqueue(["a", "b"][i % 2], "x").expect("enqueue"))
            .collect();
        assert_eq!(s.running(), 1);

        s.set_limits(limits(4, 8, 16, 16));
        assert_eq!(s.limits().concurrency, 4);
        let mut permits: Vec<Permit> = tickets.iter_mut().filter_map(ready).collect();
        assert_eq!(permits.len(), 4);
        assert_eq!((s.running(), s.queued()), (4, 2));

        s.set_limits(limits(2, 8, 16, 16));
        assert_eq!(s.running(), 4, "lowering never stops running runs");
        permits.truncate(2);
        assert_eq!(s.running(), 2, "no dispatch while at the new limit");
        permits.truncate(1);
        assert_eq!(s.running(), 2, "one more once under it");
        let more: Vec<Permit> = tickets.iter_mut().filter_map(ready).collect();
        assert_eq!(more.len(), 1);

        // Zeros read as one.
        s.set_limits(limits(0, 0, 0, 0));
        assert_eq!(s.limits(), limits(1, 1, 1, 1));
    }

    /// Many tasks on several threads, dropping tickets and permits at random
    /// moments, some in panicking tasks, while agents are paused, resumed and
    /// cancelled: the limits hold throughout and nothing leaks.
    #[test]
    fn stress_no_leaks() {
        const TENANTS: usize = 8;
        const RUNS: usize = 200;
        const CONCURRENCY: usize = 3;
        const CAP: usize = 2;
        const INTENTIONAL: &str = "intentional panic";

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .expect("runtime");
        // Quiet the intentional task panics (only those: the hook is
        // process-wide and other tests' failures must still be reported).
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with(INTENTIONAL));
            if !ours {
                hook(info);
            }
        }));

        let s = Scheduler::new(limits(CONCURRENCY, CAP, RUNS, TENANTS * RUNS));
        let total = Arc::new(AtomicUsize::new(0));
        // Highest counts seen (asserting in the tasks would be lost in the
        // intentional panics).
        let max_total = Arc::new(AtomicUsize::new(0));
        let max_tenant = Arc::new(AtomicUsize::new(0));
        let per_tenant: Arc<Vec<AtomicUsize>> =
            Arc::new((0..TENANTS).map(|_| AtomicUsize::new(0)).collect());
        let completed = Arc::new(AtomicUsize::new(0));

        rt.block_on(async {
            let mut tasks = Vec::new();
            for tenant in 0..TENANTS {
                for run in 0..RUNS {
                    let (s, total, per_tenant, completed) = (
                        Arc::clone(&s),
                        Arc::clone(&total),
                        Arc::clone(&per_tenant),
                        Arc::clone(&completed),
                    );
                    let (max_total, max_tenant) = (Arc::clone(&max_total), Arc::clone(&max_tenant));
                    tasks.push(tokio::spawn(async move {
                        let mut rng = XorShift::new((tenant * RUNS + run) as u64 + 1);
                        let name = format!("tenant{tenant}");
                        let agent = format!("agent{tenant}-{}", rng.below(3));
                        let mut ticket = s.enqueue(&name, &agent).expect("limits admit all runs");
                        match rng.below(4) {
                            // Client goes away at once.
                            0 => drop(ticket),
                            // Client goes away after a while, maybe after a
                            // permit was dispatched to it.
                            1 => {
                                for _ in 0..rng.below(20) {
                                    if let Some(outcome) = (&mut ticket).now_or_never() {
                                        drop(outcome);
                                        return;
                                    }
                                    tokio::task::yield_now().await;
                                }
                                drop(ticket);
                            }
                            // Runs, and maybe panics while running.
                            _ => {
                                let Ok(permit) = ticket.await else {
                                    return; // cancelled
                                };
                                let now_total = total.fetch_add(1, Ordering::SeqCst) + 1;
                                let now_tenant =
                                    per_tenant[tenant].fetch_add(1, Ordering::SeqCst) + 1;
                                max_total.fetch_max(now_total, Ordering::SeqCst);
                                max_tenant.fetch_max(now_tenant, Ordering::SeqCst);
                                for _ in 0..rng.below(10) {
                                    tokio::task::yield_now().await;
                                }
                                per_tenant[tenant].fetch_sub(1, Ordering::SeqCst);
                                total.fetch_sub(1, Ordering::SeqCst);
                                completed.fetch_add(1, Ordering::SeqCst);
                                if rng.below(10) == 0 {
                                    panic!("{INTENTIONAL} holding {permit:?}");
                                }
                                drop(permit);
                            }
                        }
                    }));
                }
            }
            // Meddle meanwhile.
            let meddler = {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let mut rng = XorShift::new(99);
                    for _ in 0..500 {
                        let agent = format!("agent{}-{}", rng.below(TENANTS as u64), rng.below(3));
                        match rng.below(3) {
                            0 => s.pause(&agent),
                            1 => s.resume(&agent),
                            _ => {
                                s.cancel_agent(&agent);
                            }
                        }
                        check(&s);
                        tokio::task::yield_now().await;
                    }
                    for t in 0..TENANTS {
                        for a in 0..3 {
                            s.resume(&format!("agent{t}-{a}"));
                        }
                    }
                })
            };
            meddler.await.expect("meddler");
            for task in tasks {
                // Some tasks panic on purpose.
                let _ = task.await;
            }
        });

        assert!(completed.load(Ordering::SeqCst) > 0);
        assert!(max_total.load(Ordering::SeqCst) <= CONCURRENCY);
        assert!(max_tenant.load(Ordering::SeqCst) <= CAP);
        assert_eq!((s.running(), s.queued()), (0, 0));
        check(&s);
        assert!(s.queue_depths().is_empty());
        let st = s.lock();
        assert!(st.tenants.is_empty() && st.ring.is_empty() && st.paused.is_empty());
    }

    /// Deterministic pseudo-random numbers for the stress test.
    struct XorShift(u64);

    impl XorShift {
        fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }
}
