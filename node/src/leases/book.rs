//! The node's local book of leases: holds, rooms and what is due back (no network).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delta_host_api::{LedgerError, Reservation};
use tokio::time::Instant;

use super::*;

/// One agent's leases on this node.
#[derive(Default)]
pub(super) struct AgentLeases {
    /// Held while asking the control plane for a lease: one at a time per
    /// agent. The acquisition task owns it, so that a caller that gives up
    /// does not let a second acquisition start while the first is running.
    pub(super) acquire: Arc<tokio::sync::Mutex<()>>,
    /// The bookkeeping; never held across an `.await`.
    pub(super) book: Mutex<Book>,
}

#[derive(Default)]
pub(super) struct Book {
    pub(super) leases: Vec<Lease>,
    pub(super) open: HashMap<String, Open>,
}

pub(super) struct Open {
    /// `None`: a zero-token reservation made without a lease, or one whose
    /// lease was returned while it was open.
    pub(super) lease_id: Option<String>,
    pub(super) amount: u64,
    /// Since when it has had no lease.
    pub(super) detached: Option<Instant>,
}

pub(super) struct Lease {
    pub(super) id: String,
    pub(super) granted: u64,
    /// Charged within the grant.
    pub(super) spent: u64,
    /// Usage beyond what the lease could cover; takes no room (so it never
    /// eats another reservation's hold) but is reported at return.
    pub(super) uncovered: u64,
    pub(super) held: u64,
    pub(super) open: usize,
    pub(super) expires: Instant,
    pub(super) usable_until: Instant,
    pub(super) last_used: Instant,
    /// Expiry with open reservations has been logged.
    pub(super) expiry_noted: bool,
    /// Too small for a reservation that then leased anew: no new holds; it
    /// goes back once its open reservations end.
    pub(super) retired: bool,
}

impl Lease {
    pub(super) fn room(&self) -> u64 {
        self.granted
            .saturating_sub(self.spent.saturating_add(self.held))
    }

    pub(super) fn usable(&self, now: Instant) -> bool {
        !self.retired && now < self.usable_until
    }

    /// The return of this lease, reporting all its usage as spent.
    pub(super) fn into_return(self, agent_id: &str, now: Instant) -> PendingReturn {
        PendingReturn {
            agent_id: agent_id.to_owned(),
            spent: self.spent.saturating_add(self.uncovered),
            lease_id: self.id,
            attempts: 0,
            next_try: now,
        }
    }

    pub(super) fn expired(&self, now: Instant) -> bool {
        now >= self.expires
    }

    /// Whether it should go back to the control plane now.
    pub(super) fn returnable(&self, now: Instant, idle: Duration, grace: Duration) -> bool {
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
pub(super) struct Hold {
    pub(super) inner: Arc<Inner>,
    pub(super) agent: Arc<AgentLeases>,
    pub(super) reservation: Reservation,
    pub(super) handed_over: bool,
}

impl Hold {
    pub(super) fn hand_over(mut self) -> Reservation {
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
pub(super) struct PendingReturn {
    pub(super) agent_id: String,
    pub(super) lease_id: String,
    pub(super) spent: u64,
    pub(super) attempts: u32,
    pub(super) next_try: Instant,
}

impl Inner {
    pub(super) fn count(&self, event: &str) {
        if let Some(c) = self.counters.get() {
            c.with_label_values(&[event]).inc();
        }
    }

    pub(super) fn agent(&self, agent_id: &str) -> Arc<AgentLeases> {
        Arc::clone(lock(&self.agents).entry(agent_id.to_owned()).or_default())
    }

    pub(super) fn existing_agent(&self, agent_id: &str) -> Option<Arc<AgentLeases>> {
        lock(&self.agents).get(agent_id).cloned()
    }

    pub(super) fn reservation_id(&self) -> String {
        format!(
            "lres_{}",
            self.next_reservation.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Hold `amount` from a usable lease with room, if there is one. The
    /// lease with the least room that fits is chosen, so that large rooms
    /// stay whole for large reservations.
    pub(super) fn try_hold(
        &self,
        agent: &AgentLeases,
        agent_id: &str,
        amount: u64,
    ) -> Option<Reservation> {
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

    /// Journal reservation `r` (just taken from `agent`'s book) before the
    /// caller's operation proceeds.
    pub(super) async fn journaled(
        self: &Arc<Self>,
        agent: Arc<AgentLeases>,
        r: Reservation,
    ) -> Result<Reservation, LedgerError> {
        self.journal_hold(Hold {
            inner: Arc::clone(self),
            agent,
            reservation: r,
            handed_over: false,
        })
        .await
    }

    /// Journal `hold` at its whole amount, then hand it over: a node killed
    /// while the operation is in flight reports it as spent. If the caller
    /// goes away while the write is under way, or the write fails, the
    /// guard releases the hold.
    pub(super) async fn journal_hold(&self, hold: Hold) -> Result<Reservation, LedgerError> {
        let Some(journal) = self.journal.get() else {
            return Ok(hold.hand_over());
        };
        let r = &hold.reservation;
        let lease_id = lock(&hold.agent.book)
            .open
            .get(&r.id)
            .and_then(|o| o.lease_id.clone());
        let Some(lease_id) = lease_id.filter(|_| r.amount > 0) else {
            return Ok(hold.hand_over());
        };
        let op = JournalOp::Hold {
            spend_id: spend_id(&lease_id, &r.id),
            lease_id,
            agent_id: r.agent_id.clone(),
            tokens: r.amount,
        };
        match journal.write(op).await {
            Ok(()) => Ok(hold.hand_over()),
            Err(e) => {
                tracing::error!(agent = %r.agent_id, reservation = %r.id, error = %e,
                    "journaling a reservation failed; refused");
                Err(LedgerError::Storage(
                    "recording the reservation failed on this node".into(),
                ))
            }
        }
    }

    /// Take out of the agent's book its idle leases too small for
    /// `amount`, to be returned while a new lease is asked for: leftovers
    /// kept for later would hold tokens other nodes may need (and that a
    /// crash would lose).
    pub(super) fn take_leftovers(
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
    pub(super) fn retire_leftovers(&self, agent: &AgentLeases, amount: u64, new: &Reservation) {
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
    pub(super) fn largest_room(&self, agent: &AgentLeases) -> u64 {
        let now = Instant::now();
        lock(&agent.book)
            .leases
            .iter()
            .filter(|l| l.usable(now))
            .map(Lease::room)
            .max()
            .unwrap_or(0)
    }

    /// End reservation `id` without charging it; answers whether it was
    /// open.
    pub(super) fn end_hold(&self, agent: &AgentLeases, id: &str) -> bool {
        let now = Instant::now();
        let mut book = lock(&agent.book);
        let Some(open) = book.open.remove(id) else {
            return false;
        };
        let mut wake = false;
        let mut release = None;
        if let Some(lease) = open
            .lease_id
            .as_deref()
            .and_then(|id| book.leases.iter_mut().find(|l| l.id == id))
        {
            lease.held = lease.held.saturating_sub(open.amount);
            lease.open = lease.open.saturating_sub(1);
            lease.last_used = now;
            wake = lease.open == 0 && !lease.usable(now);
            release = Some(spend_id(&lease.id, id));
        }
        drop(book);
        // Not waited for: a lost release only leaves the hold counted as
        // spent if the node dies (conservative).
        if let (Some(journal), Some(spend_id)) = (self.journal.get(), release) {
            journal.forget(JournalOp::Release { spend_id });
        }
        if wake {
            self.wake.notify_one();
        }
        true
    }
}
