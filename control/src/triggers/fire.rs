//! The fire loop: on every control-plane replica, every
//! [`FIRE_INTERVAL`], fire the schedules that are due.
//!
//! Exactly once per tick across replicas: each replica reads the due rows,
//! decides (pure, [`super::cron::decide`]) and claims the row with a
//! conditional UPDATE from the `next_fire_at_ms` it read to the next one.
//! One UPDATE matches; the others see the value changed and move on.
//!
//! A pass claims its whole batch in one transaction, and in the same
//! transaction stores each won tick's run in the run queue (`queued`, its
//! queue row `pending`, [`crate::dispatch::sql::insert_pending`]) and the
//! fire naming it. Either all three happen or none: a replica that dies
//! mid-pass leaves the ticks due for the next pass (no tick lost, none
//! fired twice), and the dispatcher delivers the runs, retrying a node that
//! is down or busy like any queued run. One transaction per batch rather
//! than per schedule is what makes 10,000 schedules on one minute fire in
//! seconds (benches/README.md, schedules). A tick of a paused agent is
//! recorded with the error `agent_paused` and no run.

use std::time::Duration;

use super::cron::{CatchUp, Timing, decide, jitter_ms};
use super::store::{self, StoredSchedule};
use crate::app::AppState;
use crate::db::{Backend, now_ms};
use crate::dispatch::sql::{PendingRun, insert_pending};

/// How often each replica looks for due schedules.
pub const FIRE_INTERVAL: Duration = Duration::from_secs(1);
/// Due schedules taken per pass, all claimed and queued in one
/// transaction (the rest wait for the next pass, which follows at once
/// when this one was full).
const BATCH: i64 = 200;
/// Passes run at once while batches come full: PostgreSQL replicas split
/// the due rows between concurrent transactions (`SKIP LOCKED`), so four
/// hide each other's round trips; SQLite has one writer, so one.
fn passes_at_once(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 4,
        Backend::Sqlite => 1,
    }
}

/// Start the loop; abort the handle to stop it.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(FIRE_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let at_once = passes_at_once(state.db.backend());
        loop {
            every.tick().await;
            // A full batch means more may be due: go on at once, so that
            // 10,000 schedules on one minute fire within seconds rather
            // than one batch a second.
            loop {
                let mut passes = tokio::task::JoinSet::new();
                for _ in 0..at_once {
                    let state = state.clone();
                    passes.spawn(async move { pass(&state, now_ms()).await });
                }
                let mut full = false;
                while let Some(done) = passes.join_next().await {
                    match done {
                        Ok(Ok(p)) => full |= p.due >= BATCH_LEN,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "schedules: a fire pass failed");
                        }
                        Err(e) => tracing::warn!(error = %e, "schedules: a fire pass panicked"),
                    }
                }
                if !full {
                    break;
                }
            }
        }
    })
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Due schedules it read (at most a batch).
    pub due: usize,
    /// Ticks this replica claimed and fired (a run queued, or the reason
    /// none was, recorded).
    pub won: usize,
}

const BATCH_LEN: usize = BATCH as usize;

/// One pass at `now_ms`: claim and fire what is due; the fires this replica
/// won.
pub async fn fire_due(state: &AppState, now_ms: i64) -> Result<usize, sqlx::Error> {
    Ok(pass(state, now_ms).await?.won)
}

/// [`fire_due`], also saying how many due schedules it read.
pub async fn pass(state: &AppState, now_ms: i64) -> Result<Pass, sqlx::Error> {
    // A read outside any transaction first: an idle pass (most of them)
    // takes no lock, and on SQLite no write lock.
    if store::due_schedules(&state.db, now_ms, 1).await?.is_empty() {
        return Ok(Pass { due: 0, won: 0 });
    }
    let mut tx = state.db.begin().await?;
    let due = store::due_schedules_locked(&mut tx, state.db.backend(), now_ms, BATCH).await?;
    let read = due.len();
    let mut won = 0;
    for schedule in due {
        let s = &schedule.schedule;
        let Some(seen) = s.next_fire_at_ms else {
            continue;
        };
        let timing = match Timing::parse(&s.cron, &s.time_zone) {
            Ok(t) => t,
            Err(e) => {
                // Checked when stored; a time-zone database that lost a
                // name would land here. Stop it rather than loop on it.
                tracing::warn!(schedule = %s.id, error = %e, "schedule no longer parses: stopped");
                store::claim_in(&mut tx, &s.id, seen, None, None, None).await?;
                continue;
            }
        };
        let tick = schedule.next_tick_ms.unwrap_or(seen);
        let decision = decide(&timing, CatchUp::from(s.catch_up), tick, now_ms);
        let next_fire = decision
            .next_tick_ms
            .map(|t| t.saturating_add(jitter_ms(&s.id, t, i64::from(s.jitter_secs))));
        let fired_at = crate::db::now_ms();
        let claimed = store::claim_in(
            &mut tx,
            &s.id,
            seen,
            decision.next_tick_ms,
            next_fire,
            decision.fire.then_some(fired_at),
        )
        .await?;
        if !claimed {
            continue;
        }
        if decision.next_tick_ms.is_none() {
            tracing::warn!(schedule = %s.id, "schedule has no further tick: it stops");
        }
        if !decision.fire {
            tracing::info!(schedule = %s.id, tick_ms = tick, "schedule: missed ticks skipped (catch_up = skip)");
            continue;
        }
        won += 1;
        fire_one(&mut tx, &schedule, tick, fired_at).await?;
    }
    tx.commit().await?;
    // The runs were announced to this replica's dispatcher inside the
    // transaction; deliver them now rather than at its next tick.
    crate::dispatch::wake();
    Ok(Pass { due: read, won })
}

/// Queue the run of a claimed tick and record the fire at `fired_at_ms`
/// (so a fire's lag after its tick is what it says), in `tx`.
async fn fire_one(
    tx: &mut sqlx::AnyConnection,
    schedule: &StoredSchedule,
    tick_ms: i64,
    fired_at_ms: i64,
) -> Result<(), sqlx::Error> {
    let s = &schedule.schedule;
    let paused: Option<i64> =
        sqlx::query_scalar("SELECT paused FROM agents WHERE id = $1 AND tenant_id = $2")
            .bind(&s.agent_id)
            .bind(&schedule.tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
    let (run_id, error) = match paused {
        // Deleting an agent deletes its schedules; a row read before that
        // commit lands here.
        None => (None, Some("not_found: the agent no longer exists")),
        Some(p) if p != 0 => (
            None,
            Some("agent_paused: the agent is paused; this tick runs nothing"),
        ),
        Some(_) => {
            let run_id = format!("run_{}", uuid::Uuid::now_v7().simple());
            let input = s.input.to_string();
            insert_pending(
                tx,
                &PendingRun {
                    run_id: &run_id,
                    tenant_id: &schedule.tenant_id,
                    agent_id: &s.agent_id,
                    trigger: ("schedule", &s.id),
                    input: &input,
                },
                fired_at_ms,
            )
            .await?;
            crate::dispatch::queued_in_transaction(&run_id, fired_at_ms);
            (Some(run_id), None)
        }
    };
    match error {
        None => {
            tracing::info!(schedule = %s.id, agent = %s.agent_id, run = ?run_id, "schedule fired")
        }
        Some(e) => {
            tracing::warn!(schedule = %s.id, agent = %s.agent_id, error = %e, "schedule fired; no run")
        }
    }
    store::record_fire(tx, schedule, tick_ms, fired_at_ms, run_id.as_deref(), error).await
}
