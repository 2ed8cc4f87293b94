//! Admission to compilation: a node-wide bound on concurrent compiles, a
//! bound per owner (a tenant) below it, a budget of compile time per owner
//! over a sliding hour, and round robin between owners. With the per-owner
//! bound under the node-wide one (the default: one less), one tenant's
//! storm of uploads never holds every place, so another tenant's upload
//! starts at once rather than after one of the storm's compiles.
//!
//! Written here rather than with a semaphore crate: a FIFO semaphore would
//! let one tenant's queue of uploads go ahead of everybody else's, and the
//! round robin between owners is the point.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::LoadError;

/// The window over which an owner's compile time is summed.
const WINDOW: Duration = Duration::from_secs(3600);

/// Owner name used for loads that name none (CLI runs, tests, restarts).
pub(crate) const ANONYMOUS: &str = "";

#[derive(Default)]
struct State {
    running: usize,
    /// Places each named owner holds: running, or handed to its waiter and
    /// about to run (counted when handed, so two passes cannot both hand
    /// an owner its last place).
    held: HashMap<String, usize>,
    /// Waiters per owner, first come first served within an owner.
    queues: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Owners with waiters, in the order they are served.
    turn: VecDeque<String>,
    /// Compile time spent per owner: (when it ended, how long it took).
    spent: HashMap<String, VecDeque<(Instant, Duration)>>,
    /// When each of an owner's running compiles started: they count against
    /// its budget while they run, so a burst of uploads cannot all pass an
    /// empty history.
    active: HashMap<String, Vec<Instant>>,
}

/// See the module documentation.
pub(crate) struct CompileGate {
    max_concurrent: usize,
    /// Places one named owner may hold at once (loads naming no owner, the
    /// operator's own, are bounded only by `max_concurrent`).
    per_owner: usize,
    budget: Duration,
    state: Mutex<State>,
}

/// A running compile; frees its place (and hands it on) when dropped.
pub(crate) struct Ticket {
    gate: Arc<CompileGate>,
    owner: String,
    started: Instant,
}

impl CompileGate {
    /// `per_owner` None: one less than `max_concurrent` (at least one).
    pub(crate) fn new(
        max_concurrent: usize,
        per_owner: Option<usize>,
        budget: Duration,
    ) -> Arc<Self> {
        let max_concurrent = max_concurrent.max(1);
        Arc::new(Self {
            max_concurrent,
            per_owner: per_owner
                .unwrap_or(max_concurrent.saturating_sub(1))
                .clamp(1, max_concurrent),
            budget,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a place to compile for `owner`, or refuse when the owner has
    /// used up its compile time for the hour.
    pub(crate) async fn enter(self: &Arc<Self>, owner: &str) -> Result<Ticket, LoadError> {
        let waiter = {
            let mut state = self.lock();
            if owner != ANONYMOUS {
                self.check_budget(&mut state, owner)?;
            }
            // A free place is never left while a waiter under its share
            // waits (every freed place is offered to them first), so an
            // owner under its share may take one.
            if state.running < self.max_concurrent && self.under_share(&state, owner) {
                state.running += 1;
                Self::hold(&mut state, owner);
                None
            } else {
                let (tx, rx) = oneshot::channel();
                let queue = state.queues.entry(owner.to_owned()).or_default();
                queue.push_back(tx);
                if queue.len() == 1 {
                    state.turn.push_back(owner.to_owned());
                }
                Some(rx)
            }
        };
        if let Some(rx) = waiter {
            let mut waiting = Waiting {
                gate: self.clone(),
                owner: owner.to_owned(),
                rx: Some(rx),
            };
            let handed = match waiting.rx.as_mut() {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            // From here the place (if any) is ours: the guard must not pass
            // it on a second time.
            waiting.rx = None;
            if !handed {
                // The sender is dropped only with the gate.
                return Err(LoadError::Worker("the compile queue was shut down".into()));
            }
            // Budget spent while this one waited counts too.
            let mut state = self.lock();
            if owner != ANONYMOUS
                && let Err(e) = self.check_budget(&mut state, owner)
            {
                self.release(&mut state, owner);
                return Err(e);
            }
            return Ok(self.ticket(&mut state, owner));
        }
        let mut state = self.lock();
        Ok(self.ticket(&mut state, owner))
    }

    fn ticket(self: &Arc<Self>, state: &mut State, owner: &str) -> Ticket {
        let started = Instant::now();
        if owner != ANONYMOUS {
            state
                .active
                .entry(owner.to_owned())
                .or_default()
                .push(started);
        }
        Ticket {
            gate: self.clone(),
            owner: owner.to_owned(),
            started,
        }
    }

    fn check_budget(&self, state: &mut State, owner: &str) -> Result<(), LoadError> {
        let now = Instant::now();
        let running: Duration = state
            .active
            .get(owner)
            .map(|starts| starts.iter().map(|s| now.duration_since(*s)).sum())
            .unwrap_or_default();
        let spent = state.spent.entry(owner.to_owned()).or_default();
        while spent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= WINDOW)
        {
            spent.pop_front();
        }
        if spent.is_empty() && running.is_zero() {
            state.spent.remove(owner);
            return Ok(());
        }
        let used: Duration = spent.iter().map(|(_, d)| *d).sum::<Duration>() + running;
        if used < self.budget {
            return Ok(());
        }
        // The budget frees up as the oldest compiles leave the window.
        let mut over = used - self.budget;
        let mut retry_after = WINDOW;
        for (at, took) in spent.iter() {
            retry_after = WINDOW.saturating_sub(now.duration_since(*at));
            if *took > over {
                break;
            }
            over -= *took;
        }
        Err(LoadError::CompileBudgetExhausted {
            used_ms: u64::try_from(used.as_millis()).unwrap_or(u64::MAX),
            budget_ms: u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX),
            retry_after_secs: retry_after.as_secs().max(1),
        })
    }

    /// Free a place: charge the compile, then hand the place on.
    fn leave(&self, owner: &str, started: Instant) {
        let mut state = self.lock();
        if owner != ANONYMOUS {
            if let Some(starts) = state.active.get_mut(owner) {
                if let Some(i) = starts.iter().position(|s| *s == started) {
                    starts.swap_remove(i);
                }
                if starts.is_empty() {
                    state.active.remove(owner);
                }
            }
            state
                .spent
                .entry(owner.to_owned())
                .or_default()
                .push_back((Instant::now(), started.elapsed()));
        }
        self.release(&mut state, owner);
    }

    /// Whether `owner` may take one more place.
    fn under_share(&self, state: &State, owner: &str) -> bool {
        owner == ANONYMOUS || state.held.get(owner).copied().unwrap_or(0) < self.per_owner
    }

    fn hold(state: &mut State, owner: &str) {
        if owner != ANONYMOUS {
            *state.held.entry(owner.to_owned()).or_default() += 1;
        }
    }

    /// `owner` gives up a place it held: hand it on.
    fn release(&self, state: &mut State, owner: &str) {
        if let Some(n) = state.held.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.held.remove(owner);
            }
        }
        self.pass(state);
    }

    /// Hand a free place to the first owner in turn that is under its
    /// share (owners at it keep their turn), or give it back.
    fn pass(&self, state: &mut State) {
        let mut kept = VecDeque::new();
        let mut served = None;
        while let Some(next) = state.turn.pop_front() {
            if !state.queues.contains_key(&next) {
                continue;
            }
            if served.is_some() || !self.under_share(state, &next) {
                kept.push_back(next);
                continue;
            }
            let Some(queue) = state.queues.get_mut(&next) else {
                continue;
            };
            let mut handed = false;
            while let Some(tx) = queue.pop_front() {
                // A waiter that gave up (its request was dropped) is skipped.
                if tx.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            let more = !queue.is_empty();
            if !more {
                state.queues.remove(&next);
            }
            if handed {
                Self::hold(state, &next);
                // Round robin: served, it goes to the back.
                served = Some((next, more));
            } else if more {
                kept.push_back(next);
            }
        }
        state.turn = kept;
        match served {
            // The place passes on: `running` is unchanged.
            Some((owner, more)) => {
                if more {
                    state.turn.push_back(owner);
                }
            }
            None => state.running -= 1,
        }
    }

    /// Compiles running now (for metrics and tests).
    pub(crate) fn running(&self) -> usize {
        self.lock().running
    }

    /// Compiles waiting for a place.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().queues.values().map(VecDeque::len).sum()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.leave(&self.owner, self.started);
    }
}

/// A waiter's side of the queue. Dropped while waiting (its upload was
/// cancelled), it refuses any place handed to it from then on, and passes
/// on one handed to it before it could take it: otherwise that place would
/// be lost for good.
struct Waiting {
    gate: Arc<CompileGate>,
    owner: String,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                let mut state = self.gate.lock();
                self.gate.release(&mut state, &self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn owners_take_turns() {
        let gate = CompileGate::new(1, None, Duration::from_secs(3600));
        let first = gate.enter("a").await.expect("a place");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Tenant a queues three compiles, then b queues one: b must run
        // second, not fourth.
        for (i, owner) in ["a", "a", "a", "b"].into_iter().enumerate() {
            let waiting = gate.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let gate = waiting;
                let ticket = gate.enter(owner).await.expect("a place");
                order.lock().expect("lock").push(format!("{owner}{i}"));
                drop(ticket);
            }));
            // Queue them in this order.
            while gate.waiting() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for task in tasks {
            task.await.expect("task");
        }
        let order = order.lock().expect("lock").clone();
        assert_eq!(order, ["a0", "b3", "a1", "a2"]);
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test]
    async fn bounds_concurrency_and_skips_abandoned_waiters() {
        let gate = CompileGate::new(2, None, Duration::from_secs(3600));
        let one = gate.enter("a").await.expect("a place");
        let two = gate.enter("b").await.expect("a place");
        assert_eq!(gate.running(), 2);
        let abandoned = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter("c").await.map(|_| ()) })
        };
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        drop(one);
        // c gave up: its place came back instead of leaking.
        assert_eq!(gate.running(), 1);
        drop(two);
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test]
    async fn a_place_handed_to_a_waiter_that_gave_up_is_passed_on() {
        let gate = CompileGate::new(1, None, Duration::from_secs(3600));
        let first = gate.enter("a").await.expect("a place");
        let given_up = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter("b").await.map(|_| ()) })
        };
        let next = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter("c").await.map(|_| ()) })
        };
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        // b is handed the place, then cancelled before it could take it
        // (single-threaded: the abort lands before b is polled again).
        drop(first);
        given_up.abort();
        assert!(given_up.await.is_err(), "cancelled");
        next.await
            .expect("task")
            .expect("c got the place b dropped");
        assert_eq!(gate.running(), 0);
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test]
    async fn one_owners_storm_leaves_a_place_for_another() {
        let gate = CompileGate::new(2, None, Duration::from_secs(3600));
        let storm = gate.enter("a").await.expect("a place");
        // a holds its share (one of two): its next upload waits...
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter("a").await.map(drop) })
        };
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.running(), 1);
        // ...while b's starts at once on the place left free.
        let other = gate.enter("b").await.expect("b is not queued behind a");
        assert_eq!(gate.running(), 2);
        // b's end does not hand its place to a, which is still at its share.
        drop(other);
        assert_eq!((gate.running(), gate.waiting()), (1, 1));
        // a's own end does.
        drop(storm);
        waiting.await.expect("task").expect("a's second upload ran");
        assert_eq!((gate.running(), gate.waiting()), (0, 0));

        // A share of two, and loads naming no owner, use every place.
        let wide = CompileGate::new(2, Some(2), Duration::from_secs(3600));
        let (one, two) = (wide.enter("a").await, wide.enter("a").await);
        assert!(one.is_ok() && two.is_ok());
        drop((one, two));
        let (one, two) = (gate.enter(ANONYMOUS).await, gate.enter(ANONYMOUS).await);
        assert!(one.is_ok() && two.is_ok());
        assert_eq!(gate.running(), 2);
    }

    #[tokio::test]
    async fn running_compiles_count_against_the_budget() {
        let gate = CompileGate::new(2, None, Duration::from_millis(20));
        let running = gate.enter("burst").await.expect("a place");
        std::thread::sleep(Duration::from_millis(30));
        // Nothing has finished yet, but the one running is over budget.
        let err = gate.enter("burst").await.err().expect("over budget");
        assert!(
            matches!(err, LoadError::CompileBudgetExhausted { .. }),
            "{err}"
        );
        drop(running);
    }

    #[tokio::test]
    async fn refuses_an_owner_over_its_budget_only() {
        let gate = CompileGate::new(1, None, Duration::from_millis(30));
        let ticket = gate.enter("greedy").await.expect("a place");
        std::thread::sleep(Duration::from_millis(40));
        drop(ticket);
        let err = gate.enter("greedy").await.err().expect("over budget");
        match err {
            LoadError::CompileBudgetExhausted {
                budget_ms,
                retry_after_secs,
                used_ms,
            } => {
                assert_eq!(budget_ms, 30);
                assert!(used_ms >= 40, "{used_ms}");
                assert!(
                    (3500..=3600).contains(&retry_after_secs),
                    "{retry_after_secs}"
                );
            }
            other => panic!("{other}"),
        }
        assert!(!err_is_internal(&gate.enter("greedy").await.err()));
        gate.enter("modest").await.expect("another owner compiles");
        gate.enter(ANONYMOUS).await.expect("no owner, no budget");
    }

    fn err_is_internal(err: &Option<LoadError>) -> bool {
        err.as_ref().is_some_and(|e| !e.is_bad_input())
    }
}
