//! The fire loop: on every control-plane replica, every
//! [`FIRE_INTERVAL`], fire the schedules that are due.
//!
//! Exactly once per tick across replicas: each replica reads the due rows,
//! decides (pure, [`super::cron::decide`]) and claims the row with a
//! conditional UPDATE from the `next_fire_at_ms` it read to the next one.
//! One UPDATE matches; the others see the value changed and move on. Only
//! the winner starts the run, through the same code path as
//! `POST /v1/agents/{id}/runs` ([`crate::runs::start_run`]), and records
//! the fire. This works alike on SQLite and PostgreSQL and holds no lock
//! while the node is called.
//!
//! The price: a replica that dies between its claim and the run's start
//! loses that tick (at most once, never twice). A node that refuses (agent
//! paused, queue full, node down) is recorded as the fire's error; the tick
//! is not retried, as with a missed tick under `skip`.

use std::time::Duration;

use super::cron::{CatchUp, Timing, decide, jitter_ms};
use super::store::{self, StoredSchedule};
use crate::agents::load_agent;
use crate::app::AppState;
use crate::db::now_ms;

/// How often each replica looks for due schedules.
pub const FIRE_INTERVAL: Duration = Duration::from_secs(1);
/// Due schedules taken per pass (the rest wait for the next pass).
const BATCH: i64 = 200;
/// Fires started at once per replica: a pass over many due schedules does
/// not open hundreds of node calls together.
const CONCURRENCY: usize = 16;

/// Start the loop; abort the handle to stop it.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(FIRE_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // A full batch means more may be due: go on at once, so that
            // 10,000 schedules on one minute fire within seconds rather
            // than one batch a second.
            loop {
                match pass(&state, now_ms()).await {
                    Ok(p) if p.due >= BATCH_LEN => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "schedules: reading due schedules failed");
                        break;
                    }
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
    /// Fires this replica won (started or refused by the node).
    pub won: usize,
}

const BATCH_LEN: usize = BATCH as usize;

/// One pass at `now_ms`: claim and fire what is due; the fires this replica
/// won (started or refused by the node).
pub async fn fire_due(state: &AppState, now_ms: i64) -> Result<usize, sqlx::Error> {
    Ok(pass(state, now_ms).await?.won)
}

/// [`fire_due`], also saying how many due schedules it read.
pub async fn pass(state: &AppState, now_ms: i64) -> Result<Pass, sqlx::Error> {
    let due = store::due_schedules(&state.db, now_ms, BATCH).await?;
    let read = due.len();
    let mut won = 0;
    let mut running = tokio::task::JoinSet::new();
    for schedule in due {
        let Some(seen) = schedule.schedule.next_fire_at_ms else {
            continue;
        };
        let timing = match Timing::parse(&schedule.schedule.cron, &schedule.schedule.time_zone) {
            Ok(t) => t,
            Err(e) => {
                // Checked when stored; a time-zone database that lost a
                // name would land here. Stop it rather than loop on it.
                tracing::warn!(schedule = %schedule.schedule.id, error = %e, "schedule no longer parses: stopped");
                store::claim(&state.db, &schedule.schedule.id, seen, None, None, None).await?;
                continue;
            }
        };
        let tick = schedule.next_tick_ms.unwrap_or(seen);
        let decision = decide(
            &timing,
            CatchUp::from(schedule.schedule.catch_up),
            tick,
            now_ms,
        );
        let next_fire = decision.next_tick_ms.map(|t| {
            t.saturating_add(jitter_ms(
                &schedule.schedule.id,
                t,
                i64::from(schedule.schedule.jitter_secs),
            ))
        });
        // A slot first, then the claim: the fire time the claim records
        // (`last_fire_at_ms`) is when this fire asks for its run, so the
        // fire's lag includes any wait for the slot.
        while running.len() >= CONCURRENCY {
            running.join_next().await;
        }
        let fired_at = crate::db::now_ms();
        let claimed = store::claim(
            &state.db,
            &schedule.schedule.id,
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
            tracing::warn!(schedule = %schedule.schedule.id, "schedule has no further tick: it stops");
        }
        if !decision.fire {
            tracing::info!(schedule = %schedule.schedule.id, tick_ms = tick, "schedule: missed ticks skipped (catch_up = skip)");
            continue;
        }
        won += 1;
        let state = state.clone();
        running.spawn(async move { fire_one(&state, &schedule, tick, fired_at).await });
    }
    while running.join_next().await.is_some() {}
    Ok(Pass { due: read, won })
}

/// Start the run of a claimed tick and record the fire at `fired_at_ms`,
/// when it was claimed (so a fire's lag after its tick is what it says).
async fn fire_one(state: &AppState, schedule: &StoredSchedule, tick_ms: i64, fired_at_ms: i64) {
    let s = &schedule.schedule;
    let started = match load_agent(state, &schedule.tenant_id, &s.agent_id).await {
        Ok(agent) => {
            let trigger = crate::runs::RunTrigger::of("schedule", &s.id);
            crate::runs::start_run(state, &agent, &s.input, false, trigger).await
        }
        Err(e) => Err(e),
    };
    let (run_id, error) = match &started {
        Ok(started) => (Some(started.run_id().to_owned()), None),
        Err(e) => (None, Some(format!("{}: {}", e.code, e.message))),
    };
    match &error {
        None => {
            tracing::info!(schedule = %s.id, agent = %s.agent_id, run = ?run_id, "schedule fired")
        }
        Some(e) => {
            tracing::warn!(schedule = %s.id, agent = %s.agent_id, error = %e, "schedule fired; the run was refused")
        }
    }
    if let Err(e) = store::record_fire(
        &state.db,
        schedule,
        tick_ms,
        fired_at_ms,
        run_id.as_deref(),
        error.as_deref(),
    )
    .await
    {
        tracing::warn!(schedule = %s.id, error = %e, "recording a schedule's fire");
    }
}
