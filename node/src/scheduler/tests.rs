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
                            let now_tenant = per_tenant[tenant].fetch_add(1, Ordering::SeqCst) + 1;
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
