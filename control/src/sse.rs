//! Server-sent event streams that follow rows of the database: a stream
//! polls for what came after the last event it sent and ends once the
//! followed thing is over. Used by bounty events and workflow run events.
//! Polling (not a notification channel) keeps it the same on SQLite and
//! PostgreSQL and across replicas: any replica's write is seen.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use delta_http::ApiError;

/// What one poll found: the events (each a whole `event:/id:/data:`
/// block), the position after them, and whether the stream is over.
pub struct Batch {
    /// Formatted events, in order.
    pub events: Vec<String>,
    /// Position of the last event (the next poll starts after it).
    pub last: i64,
    /// Nothing more will come: end the stream after these.
    pub closed: bool,
}

/// One event block: `event: kind`, `id: seq`, `data: body`.
pub fn event_block(kind: &str, seq: i64, body: &serde_json::Value) -> String {
    format!("event: {kind}\nid: {seq}\ndata: {body}\n\n")
}

/// A `text/event-stream` response that calls `fetch(last)` every `poll`
/// (at once again after a poll that found events) from position `after`
/// until a batch says it is closed or a poll fails (logged as `what`).
pub fn follow<F, Fut>(
    what: String,
    after: i64,
    poll: Duration,
    fetch: F,
) -> Result<Response, ApiError>
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Batch, sqlx::Error>> + Send + 'static,
{
    struct Follow<F> {
        fetch: F,
        what: String,
        last: i64,
        done: bool,
        first: bool,
        poll: Duration,
    }
    let start = Follow {
        fetch,
        what,
        last: after,
        done: false,
        first: true,
        poll,
    };
    let events = futures_util::stream::unfold(start, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            if !f.first {
                tokio::time::sleep(f.poll).await;
            }
            f.first = false;
            match (f.fetch)(f.last).await {
                Ok(batch) => {
                    f.last = batch.last;
                    f.done = batch.closed;
                    if !batch.events.is_empty() {
                        // More may be waiting: look again at once.
                        f.first = !batch.closed;
                        return Some((Ok::<_, std::io::Error>(batch.events.concat()), f));
                    }
                }
                Err(e) => {
                    tracing::warn!(stream = %f.what, error = %e, "reading events");
                    return None;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(events))
        .map_err(ApiError::internal)
}
