//! (being written)

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}

/// Marks silent nodes down and re-places their agents (being written).
pub fn spawn_monitor(_state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {})
}
