//! Triggers (issue 14): what starts an agent's runs besides
//! `POST /v1/agents/{id}/runs`.
//!
//! - **Schedules** ([`schedules`]): a cron expression in an IANA time zone,
//!   the run's input, a catch-up rule after downtime and a jitter. The
//!   fire loop ([`fire`]) on every replica fires each tick exactly once
//!   across replicas by claiming the row with a conditional UPDATE.
//! - **Inbound webhooks** ([`webhooks`]): a public URL per webhook whose
//!   deliveries are signed with its secret ([`signature`]) and become runs.
//!
//! Layers: [`cron`] and [`signature`] are pure; [`store`] holds the SQL;
//! the handlers and the fire loop sit on both and start runs only through
//! [`crate::runs::start_run`], the path every run takes.

/// When a schedule fires (pure rules, in `delta-triggers`).
pub use delta_triggers::cron;
pub mod fire;
pub mod model;
pub mod schedules;
pub mod signature;
pub mod store;
pub mod webhooks;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Routes of schedules and webhooks.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(schedules::routes())
        .merge(webhooks::routes())
}

/// Forget webhook signatures whose replay window has passed (the sweep
/// calls this); rows deleted.
pub async fn sweep(state: &AppState, now_ms: i64) -> Result<u64, sqlx::Error> {
    store::forget_signatures(&state.db, now_ms).await
}
