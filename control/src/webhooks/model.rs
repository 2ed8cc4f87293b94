//! Event types, the API's shapes and their validation.

use axum::http::StatusCode;
use delta_http::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

/// Id prefixes.
pub(super) const ENDPOINT_PREFIX: &str = "whep";
pub(super) const MESSAGE_PREFIX: &str = "msg";
pub(super) const DELIVERY_PREFIX: &str = "whd";

/// Most endpoints one tenant may register: each one multiplies every
/// event's deliveries.
pub const MAX_ENDPOINTS: i64 = 20;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest description, bytes.
pub const MAX_DESCRIPTION_LEN: usize = 200;
/// Most ids in an endpoint's `agent_ids` (and in its `trigger_ids`).
pub const MAX_FILTER_IDS: usize = 50;

/// What happened. The body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// A bounty was funded: its reward is in escrow and it is open.
    #[serde(rename = "bounty.funded")]
    BountyFunded,
    /// A submission to one of the tenant's bounties was recorded.
    #[serde(rename = "submission.created")]
    SubmissionCreated,
    /// A submission was verified (a verdict) or its verification failed.
    #[serde(rename = "submission.verified")]
    SubmissionVerified,
    /// A submission was approved: the reward was paid out.
    #[serde(rename = "bounty.completed")]
    BountyCompleted,
    /// A funded bounty was cancelled or expired: the escrow was refunded.
    #[serde(rename = "bounty.refunded")]
    BountyRefunded,
    /// A submission was approved by the bounty's business (sent before
    /// `bounty.completed`, in the same transaction).
    #[serde(rename = "submission.approved")]
    SubmissionApproved,
    /// A submission was rejected: by the business, or because another
    /// submission of its bounty was approved.
    #[serde(rename = "submission.rejected")]
    SubmissionRejected,
    /// A run of one of the tenant's agents completed: the guest returned
    /// its output.
    #[serde(rename = "run.completed")]
    RunCompleted,
    /// A run ended otherwise: the agent's error, a trap, a limit (fuel,
    /// deadline, memory), cancelled, or `dead` (no node took it).
    #[serde(rename = "run.failed")]
    RunFailed,
    /// A workflow run completed: every step did; `data.output` is its
    /// output.
    #[serde(rename = "workflow.completed")]
    WorkflowCompleted,
    /// A workflow run failed: a step failed after its retries, or its token
    /// budget ran out (`data.error`).
    #[serde(rename = "workflow.failed")]
    WorkflowFailed,
    /// A workflow run was cancelled.
    #[serde(rename = "workflow.cancelled")]
    WorkflowCancelled,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 12] = [
        Self::BountyFunded,
        Self::SubmissionCreated,
        Self::SubmissionVerified,
        Self::BountyCompleted,
        Self::BountyRefunded,
        Self::SubmissionApproved,
        Self::SubmissionRejected,
        Self::RunCompleted,
        Self::RunFailed,
        Self::WorkflowCompleted,
        Self::WorkflowFailed,
        Self::WorkflowCancelled,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BountyFunded => "bounty.funded",
            Self::SubmissionCreated => "submission.created",
            Self::SubmissionVerified => "submission.verified",
            Self::BountyCompleted => "bounty.completed",
            Self::BountyRefunded => "bounty.refunded",
            Self::SubmissionApproved => "submission.approved",
            Self::SubmissionRejected => "submission.rejected",
            Self::RunCompleted => "run.completed",
            Self::RunFailed => "run.failed",
            Self::WorkflowCompleted => "workflow.completed",
            Self::WorkflowFailed => "workflow.failed",
            Self::WorkflowCancelled => "workflow.cancelled",
        }
    }

    /// Whether it is about a run (the endpoints' `agent_ids` and
    /// `trigger_ids` filter these only).
    pub fn is_run_event(self) -> bool {
        matches!(self, Self::RunCompleted | Self::RunFailed)
    }
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where events are POSTed: `http` or `https`, no user or password. Its
    /// host must resolve to public addresses only (unless the operator set
    /// `allow_private_webhook_urls`).
    #[schema(
        max_length = 2048,
        pattern = r"^https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[!-~]*)?$"
    )]
    pub url: String,
    /// The events sent to it: at least one (a type named twice counts once).
    #[schema(min_items = 1, max_items = 9)]
    pub event_types: Vec<EventType>,
    /// A note for humans (at most 200 bytes).
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
    /// Only `run.*` events of these agents (the tenant's own; an id that is
    /// not one is 422 `unknown_agent`). Empty (the default): every agent.
    /// Other event types are not filtered.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub agent_ids: Vec<String>,
    /// Only `run.*` events of runs started by these triggers: the tenant's
    /// schedules (`sch_...`) and inbound webhooks (`whk_...`; another id is
    /// 422 `unknown_trigger`). Empty (the default): every run, API calls
    /// and bounty attempts included. With `agent_ids`, both must match.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub trigger_ids: Vec<String>,
}

/// A registered endpoint (the secret is shown only at creation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    /// `whep_...`.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events sent to it.
    pub event_types: Vec<EventType>,
    /// The note.
    pub description: String,
    /// Only `run.*` events of these agents (empty: every agent).
    #[serde(default)]
    pub agent_ids: Vec<String>,
    /// Only `run.*` events of runs these schedules or inbound webhooks
    /// started (empty: every run).
    #[serde(default)]
    pub trigger_ids: Vec<String>,
    /// Created.
    pub created_at_ms: i64,
}

/// A new endpoint with its signing secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedEndpoint {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_` and the base64 of 32 random bytes: the HMAC key is those
    /// bytes. Shown only now; keep it to verify `webhook-signature`.
    pub secret: String,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// `whd_...`.
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The message: its `webhook-id`, the same on every try and replay.
    pub message_id: String,
    /// The event.
    pub event_type: EventType,
    /// `pending` (waiting for its next try), `delivered` (a 2xx) or `dead`
    /// (five tries failed; replay it with `POST .../replay`).
    pub status: String,
    /// Tries made.
    pub attempts: i64,
    /// When the next try is due (pending).
    pub next_attempt_at_ms: i64,
    /// The last try's HTTP status, if it got one.
    pub last_status: Option<i64>,
    /// Why the last try failed.
    pub last_error: Option<String>,
    /// Created.
    pub created_at_ms: i64,
    /// Last changed.
    pub updated_at_ms: i64,
}

pub(super) const ENDPOINT_COLUMNS: &str =
    "id, url, event_types, description, agent_ids, trigger_ids, created_at_ms";

/// A JSON column this module wrote.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    name: &str,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: name.to_owned(),
        source: Box::new(e),
    })
}

pub(super) fn endpoint_from_row(row: &AnyRow) -> Result<Endpoint, sqlx::Error> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        event_types: json_column(row, "event_types")?,
        description: row.try_get("description")?,
        agent_ids: json_column(row, "agent_ids")?,
        trigger_ids: json_column(row, "trigger_ids")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

pub(super) const DELIVERY_COLUMNS: &str = "id, endpoint_id, message_id, event_type, status, \
     attempts, next_attempt_at_ms, last_status, last_error, created_at_ms, updated_at_ms";

pub(super) fn delivery_from_row(row: &AnyRow) -> Result<Delivery, sqlx::Error> {
    let event: String = row.try_get("event_type")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        message_id: row.try_get("message_id")?,
        event_type: serde_json::from_value(serde_json::Value::String(event))
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message.into())
}

/// The URL's host and port, if its shape is acceptable: `http`/`https`, a
/// host, no credentials, at most [`MAX_URL_LEN`] bytes.
pub(super) fn parse_url(raw: &str) -> Result<(reqwest::Url, String, u16), ApiError> {
    let bad = |why: &str| unprocessable("invalid_url", format!("url {why}"));
    if raw.len() > MAX_URL_LEN {
        return Err(bad("is longer than 2048 bytes"));
    }
    if !matches_pattern(raw) {
        return Err(bad(
            "must be http(s)://host[:port][/path] with a DNS name or IPv4 host and printable ASCII",
        ));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user or password"));
    }
    // IPv6 literals come bracketed; the lookup wants them bare.
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
        _ => return Err(bad("has no host")),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad("has no port"))?;
    Ok((url, host, port))
}

/// The documented pattern, `^https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[!-~]*)?$`,
/// checked by hand (no regex engine in the control plane).
fn matches_pattern(raw: &str) -> bool {
    let Some(rest) = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))
    else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = (1..=253).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let path_ok = path.bytes().all(|b| (b'!'..=b'~').contains(&b));
    host_ok && port_ok && path_ok
}

/// Check a new endpoint's fields, and drop event types named twice (the
/// address check is separate: it needs DNS).
pub(super) fn validate(body: &mut NewEndpoint) -> Result<(), ApiError> {
    let mut types: Vec<EventType> = Vec::with_capacity(body.event_types.len());
    for t in &body.event_types {
        if !types.contains(t) {
            types.push(*t);
        }
    }
    body.event_types = types;
    if body.event_types.is_empty() {
        return Err(unprocessable(
            "invalid_event_types",
            "event_types needs at least one event type",
        ));
    }
    if body.description.len() > MAX_DESCRIPTION_LEN {
        return Err(unprocessable(
            "invalid_description",
            "description is longer than 200 bytes",
        ));
    }
    for (name, ids) in [
        ("agent_ids", &mut body.agent_ids),
        ("trigger_ids", &mut body.trigger_ids),
    ] {
        let mut kept: Vec<String> = Vec::with_capacity(ids.len());
        for id in ids.drain(..) {
            if !kept.contains(&id) {
                kept.push(id);
            }
        }
        if kept.len() > MAX_FILTER_IDS {
            return Err(unprocessable(
                "invalid_filter",
                format!("{name} names more than {MAX_FILTER_IDS} ids"),
            ));
        }
        // Ids are short tokens; a longer one cannot name anything.
        if kept.iter().any(|id| id.is_empty() || id.len() > 128) {
            return Err(unprocessable(
                "invalid_filter",
                format!("{name} holds an empty id or one longer than 128 bytes"),
            ));
        }
        *ids = kept;
    }
    parse_url(&body.url).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_http_a_host_and_no_credentials() {
        assert!(parse_url("https://hooks.example.com/x?y=1").is_ok());
        assert_eq!(
            parse_url("http://127.0.0.1:9/a")
                .map(|(_, h, p)| (h, p))
                .ok(),
            Some(("127.0.0.1".to_owned(), 9))
        );
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
            "mailto:a@example.com",
            "http://[::1]/",
            "http://example.com/a b",
            "http://example.com:123456/",
        ] {
            assert_eq!(
                parse_url(bad).err().map(|e| e.code),
                Some("invalid_url"),
                "{bad}"
            );
        }
    }

    #[test]
    fn event_types_are_kept_once_each() {
        let body = |types: Vec<EventType>| NewEndpoint {
            url: "https://example.com/".into(),
            event_types: types,
            description: String::new(),
            agent_ids: Vec::new(),
            trigger_ids: Vec::new(),
        };
        assert!(validate(&mut body(EventType::ALL.to_vec())).is_ok());
        let mut twice = body(vec![EventType::BountyFunded, EventType::BountyFunded]);
        assert!(validate(&mut twice).is_ok());
        assert_eq!(twice.event_types, [EventType::BountyFunded]);
        assert_eq!(
            validate(&mut body(vec![])).err().map(|e| e.code),
            Some("invalid_event_types")
        );
        for t in EventType::ALL {
            let back: EventType =
                serde_json::from_value(serde_json::json!(t.as_str())).expect("round trip");
            assert_eq!(back, t);
        }
    }
}
