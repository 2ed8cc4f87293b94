//! Per-provider circuit breaker (closed -> open -> half-open -> closed).
//!
//! Shared by every agent's calls to a provider, so one Mutex guards a few
//! integers; it is never held across an await.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::CircuitConfig;

/// Breaker state of one provider.
#[derive(Debug)]
pub(crate) struct Circuit {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Consecutive failed attempts since the last success.
    failures: u32,
    /// `Some` while open (until this instant) or half-open (instant passed).
    open_until: Option<Instant>,
    /// A half-open probe is in flight: other calls keep skipping.
    probing: bool,
}

/// Permission to make one attempt. Report its outcome with
/// [`Permit::success`] or [`Permit::failure`]; dropping it unreported (the
/// attempt was neutral, e.g. a 429, or the call was cancelled) frees the
/// probe slot without changing the state.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    circuit: &'a Circuit,
    probe: bool,
}

impl Circuit {
    pub(crate) fn new(cfg: &CircuitConfig) -> Self {
        Self {
            threshold: cfg.failure_threshold,
            cooldown: Duration::from_millis(cfg.cooldown_ms),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters updated atomically under the lock; a
        // panic elsewhere cannot leave it inconsistent, so poison is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `None` while open, or while half-open with a probe already in flight.
    pub(crate) fn admit(&self) -> Option<Permit<'_>> {
        let mut s = self.lock();
        match s.open_until {
            None => Some(Permit {
                circuit: self,
                probe: false,
            }),
            Some(until) if Instant::now() < until => None,
            Some(_) if s.probing => None,
            Some(_) => {
                s.probing = true;
                Some(Permit {
                    circuit: self,
                    probe: true,
                })
            }
        }
    }

    /// Whether the circuit is currently open (for tests and status pages).
    pub(crate) fn is_open(&self) -> bool {
        self.lock()
            .open_until
            .is_some_and(|until| Instant::now() < until)
    }
}

impl Permit<'_> {
    /// The attempt succeeded: close the circuit.
    pub(crate) fn success(self) {
        let mut s = self.circuit.lock();
        *s = State::default();
    }

    /// The attempt failed: count it, and open the circuit at the threshold
    /// or when a half-open probe failed. A threshold of 0 disables the
    /// breaker.
    pub(crate) fn failure(self) {
        let c = self.circuit;
        let mut s = c.lock();
        s.failures = s.failures.saturating_add(1);
        if c.threshold > 0 && (self.probe || s.failures >= c.threshold) {
            s.open_until = Some(Instant::now() + c.cooldown);
            s.probing = false;
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            // After success/failure this is a no-op (they reset `probing`);
            // otherwise the probe ended neutral or was cancelled and the next
            // call may probe again.
            self.circuit.lock().probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_threshold_then_probes_once() {
        let c = Circuit::new(&CircuitConfig {
            failure_threshold: 2,
            cooldown_ms: 0,
        });
        c.admit().expect("closed").failure();
        assert!(c.lock().open_until.is_none());
        c.admit().expect("closed").failure();
        assert!(c.lock().open_until.is_some());
        // Cooldown of 0: half-open at once, one probe at a time.
        let probe = c.admit().expect("half-open probe");
        assert!(c.admit().is_none());
        probe.failure();
        let probe = c.admit().expect("probe after reopening");
        probe.success();
        assert!(c.admit().is_some_and(|p| !p.probe));
        assert!(!c.is_open());
    }

    #[test]
    fn neutral_probe_frees_the_slot() {
        let c = Circuit::new(&CircuitConfig {
            failure_threshold: 1,
            cooldown_ms: 0,
        });
        c.admit().expect("closed").failure();
        drop(c.admit().expect("probe"));
        assert!(c.admit().is_some());
    }
}
