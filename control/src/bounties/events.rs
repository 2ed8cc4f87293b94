//! A bounty's events: stored in `bounty_events` in the transaction of the
//! change they report (so the stream never shows a change that rolled
//! back, nor misses one that committed), numbered per bounty, and served
//! as server-sent events by `GET /v1/bounties/{id}/events`: replayed from
//! the start (or after `Last-Event-ID`), then live until the bounty is
//! closed. The events that have a webhook twin are also put in the
//! webhook outbox here, so the two never disagree.
//!
//! Who sees what: the business every event; a tenant holding a claim the
//! bounty-wide events (`bounty.*`) and those about its own claims and
//! submissions; anyone else 404.

use std::time::Duration;

use axum::response::Response;
use delta_http::ApiError;
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row as _};

use crate::db::Db;
use crate::webhooks::{EventType, enqueue};

use super::store::db_err;

/// How often a live stream looks for new events.
const POLL: Duration = Duration::from_millis(200);
/// Most events read per look.
const BATCH: i64 = 100;

/// A bounty event's type (the SSE `event:` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Funded: the reward is in escrow and the bounty open.
    Funded,
    /// An agent claimed the bounty.
    ClaimCreated,
    /// A submission was recorded.
    SubmissionCreated,
    /// A submission was verified, or its verification failed.
    SubmissionVerified,
    /// A submission was approved (then `Completed`, in the same change).
    SubmissionApproved,
    /// A submission was rejected (by the business, or because another
    /// was approved).
    SubmissionRejected,
    /// A submission was approved and the reward paid out.
    Completed,
    /// The bounty was cancelled or expired and its escrow refunded.
    Refunded,
}

impl Kind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Funded => "bounty.funded",
            Self::ClaimCreated => "claim.created",
            Self::SubmissionCreated => "submission.created",
            Self::SubmissionVerified => "submission.verified",
            Self::SubmissionApproved => "submission.approved",
            Self::SubmissionRejected => "submission.rejected",
            Self::Completed => "bounty.completed",
            Self::Refunded => "bounty.refunded",
        }
    }

    fn webhook(self) -> Option<EventType> {
        match self {
            Self::Funded => Some(EventType::BountyFunded),
            Self::ClaimCreated => None,
            Self::SubmissionCreated => Some(EventType::SubmissionCreated),
            Self::SubmissionVerified => Some(EventType::SubmissionVerified),
            Self::SubmissionApproved => Some(EventType::SubmissionApproved),
            Self::SubmissionRejected => Some(EventType::SubmissionRejected),
            Self::Completed => Some(EventType::BountyCompleted),
            Self::Refunded => Some(EventType::BountyRefunded),
        }
    }
}

/// Record event `kind` of bounty `bounty_id` (owned by `owner`) in the
/// transaction `c`, about claimant tenant `subject` (`None`: the whole
/// bounty), and queue its webhook to the owner's endpoints (and, for a
/// submission's events, to the submitter's).
pub(super) async fn publish(
    c: &mut AnyConnection,
    owner: &str,
    bounty_id: &str,
    subject: Option<&str>,
    kind: Kind,
    data: Value,
    now: i64,
) -> Result<(), ApiError> {
    // The increment takes the bounty's row lock (PostgreSQL) or is inside
    // the writer's turn (SQLite): the numbers follow commit order, which a
    // live follower reading `bounty_seq > last` relies on.
    let seq: i64 = sqlx::query_scalar(
        "UPDATE bounties SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
    )
    .bind(bounty_id)
    .fetch_one(&mut *c)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO bounty_events (bounty_id, bounty_seq, event_type, subject_tenant_id, data, \
         created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(bounty_id)
    .bind(seq)
    .bind(kind.as_str())
    .bind(subject)
    .bind(data.to_string())
    .bind(now)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    if let Some(event) = kind.webhook() {
        // The agent owner's endpoints learn about its own submissions too
        // (created, verified, approved, rejected); the bounty-wide events
        // stay the business's.
        let submitter = subject.filter(|t| {
            *t != owner
                && matches!(
                    kind,
                    Kind::SubmissionCreated
                        | Kind::SubmissionVerified
                        | Kind::SubmissionApproved
                        | Kind::SubmissionRejected
                )
        });
        if let Some(submitter) = submitter {
            enqueue(c, submitter, event, data.clone(), now)
                .await
                .map_err(db_err)?;
        }
        enqueue(c, owner, event, data, now).await.map_err(db_err)?;
    }
    Ok(())
}

/// One server-sent event of a bounty's stream (documentation only: the
/// handler writes the text).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub(super) struct BountyEvent {
    /// `bounty.funded`, `claim.created`, `submission.created`,
    /// `submission.verified`, `submission.approved`, `submission.rejected`,
    /// `bounty.completed` or `bounty.refunded`.
    event: String,
    /// The event's number within the bounty (1, 2, ...): send it back as
    /// `Last-Event-ID` to resume after it.
    id: String,
    /// JSON: `{"seq": <id>, "type": <event>, "bounty_id", "at_ms", "data":
    /// {...}}`; `data` is the webhook's `data` for the same event (ids,
    /// amounts, statuses; never a payload), and for `claim.created`
    /// `{"bounty_id", "claim_id", "agent_id"}`.
    data: String,
}

/// Whether `tenant` may follow bounty `bounty_id` and, if so, whether it
/// sees every event (the business).
pub(super) async fn access(db: &Db, tenant: &str, bounty_id: &str) -> Result<bool, ApiError> {
    let row = sqlx::query(
        "SELECT b.tenant_id, (SELECT COUNT(*) FROM bounty_claims c WHERE c.bounty_id = b.id \
         AND c.tenant_id = $2) AS claims FROM bounties b WHERE b.id = $1",
    )
    .bind(bounty_id)
    .bind(tenant)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Err(ApiError::not_found("bounty"));
    };
    let owner: String = row.try_get("tenant_id").map_err(db_err)?;
    let claims: i64 = row.try_get("claims").map_err(db_err)?;
    if owner == tenant {
        Ok(true)
    } else if claims > 0 {
        Ok(false)
    } else {
        Err(ApiError::not_found("bounty"))
    }
}

/// The events after `after` that `tenant` may see, and whether the bounty
/// is closed (no event will follow once these are sent).
async fn next_batch(
    db: &Db,
    bounty_id: &str,
    tenant: &str,
    all: bool,
    after: i64,
) -> Result<(Vec<String>, i64, bool), sqlx::Error> {
    // Read the status first: an event committed after this read is found
    // by the next look, so "closed and nothing new" is final.
    let status: String = sqlx::query_scalar("SELECT status FROM bounties WHERE id = $1")
        .bind(bounty_id)
        .fetch_one(db.pool())
        .await?;
    let rows = sqlx::query(
        "SELECT bounty_seq, event_type, data, created_at_ms FROM bounty_events \
         WHERE bounty_id = $1 AND bounty_seq > $2 \
         AND ($3 = 1 OR subject_tenant_id IS NULL OR subject_tenant_id = $4) \
         ORDER BY bounty_seq LIMIT $5",
    )
    .bind(bounty_id)
    .bind(after)
    .bind(i64::from(all))
    .bind(tenant)
    .bind(BATCH)
    .fetch_all(db.pool())
    .await?;
    let mut last = after;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("bounty_seq")?;
        let kind: String = row.try_get("event_type")?;
        let data: String = row.try_get("data")?;
        let at: i64 = row.try_get("created_at_ms")?;
        let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        let body = json!({ "seq": seq, "type": kind, "bounty_id": bounty_id, "at_ms": at,
                           "data": data });
        out.push(crate::sse::event_block(&kind, seq, &body));
        last = seq;
    }
    let closed = ["completed", "cancelled", "expired"].contains(&status.as_str())
        && rows.len() < BATCH as usize;
    Ok((out, last, closed))
}

/// The stream of bounty `bounty_id`'s events after `after` for `tenant`.
pub(super) fn stream(
    db: Db,
    bounty_id: String,
    tenant: String,
    all: bool,
    after: i64,
) -> Result<Response, ApiError> {
    let what = format!("bounty {bounty_id}");
    crate::sse::follow(what, after, POLL, move |last| {
        let (db, bounty_id, tenant) = (db.clone(), bounty_id.clone(), tenant.clone());
        async move {
            let (events, last, closed) = next_batch(&db, &bounty_id, &tenant, all, last).await?;
            Ok(crate::sse::Batch {
                events,
                last,
                closed,
            })
        }
    })
}
