//! The outbox: events written by the operation that causes them, in its
//! own transaction.

use serde_json::{Value, json};
use sqlx::{AnyConnection, Row as _};

use crate::db::new_id;

use super::model::{DELIVERY_PREFIX, EventType, MESSAGE_PREFIX};

/// What a run event is about, for the endpoints' filters.
#[derive(Debug, Clone, Copy)]
pub(super) struct Subject<'a> {
    /// The run's agent.
    pub agent_id: &'a str,
    /// The schedule or inbound webhook that started it, if one did.
    pub trigger_id: Option<&'a str>,
}

/// One endpoint of the tenant, as the outbox matches it.
#[derive(Debug)]
pub(super) struct Subscriber {
    id: String,
    event_types: Vec<EventType>,
    agent_ids: Vec<String>,
    trigger_ids: Vec<String>,
}

impl Subscriber {
    /// The endpoint's id.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Whether it gets `event` (about `subject`, for a run event).
    pub(super) fn wants(&self, event: EventType, subject: Option<Subject<'_>>) -> bool {
        if !self.event_types.contains(&event) {
            return false;
        }
        match subject {
            Some(s) if event.is_run_event() => {
                (self.agent_ids.is_empty() || self.agent_ids.iter().any(|a| a == s.agent_id))
                    && (self.trigger_ids.is_empty()
                        || s.trigger_id
                            .is_some_and(|t| self.trigger_ids.iter().any(|x| x == t)))
            }
            _ => true,
        }
    }

    /// Whether it subscribes to any of `events` (before the filters).
    pub(super) fn subscribes_to_any(&self, events: &[EventType]) -> bool {
        events.iter().any(|e| self.event_types.contains(e))
    }
}

/// The tenant's endpoints.
pub(super) async fn subscribers(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<Vec<Subscriber>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, event_types, agent_ids, trigger_ids FROM webhook_endpoints \
         WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    let mut all = Vec::with_capacity(rows.len());
    for row in &rows {
        // Stored by this module as JSON arrays; a row that does not parse
        // (never written so) subscribes to nothing rather than failing the
        // state change that is being recorded.
        let list = |name: &str| -> Result<Option<String>, sqlx::Error> { row.try_get(name) };
        all.push(Subscriber {
            id: row.try_get("id")?,
            event_types: serde_json::from_str(&list("event_types")?.unwrap_or_default())
                .unwrap_or_default(),
            agent_ids: serde_json::from_str(&list("agent_ids")?.unwrap_or_default())
                .unwrap_or_default(),
            trigger_ids: serde_json::from_str(&list("trigger_ids")?.unwrap_or_default())
                .unwrap_or_default(),
        });
    }
    Ok(all)
}

/// Record event `event` for `tenant` on `conn`, which must be the
/// transaction of the state change it describes (so the event is sent if
/// and only if that change commits): one message, and one pending delivery
/// for each of the tenant's endpoints subscribed to `event`. Nothing is
/// written when none is. The body is Standard Webhooks' shape: `{"type",
/// "timestamp" (RFC 3339), "data"}`.
pub async fn enqueue(
    conn: &mut AnyConnection,
    tenant: &str,
    event: EventType,
    data: Value,
    now: i64,
) -> Result<(), sqlx::Error> {
    let endpoints: Vec<String> = subscribers(conn, tenant)
        .await?
        .into_iter()
        .filter(|s| s.wants(event, None))
        .map(|s| s.id)
        .collect();
    write(
        conn,
        tenant,
        event,
        data,
        &new_id(MESSAGE_PREFIX),
        &endpoints,
        now,
    )
    .await?;
    Ok(())
}

/// Write message `message_id` of `event` and a pending delivery of it to
/// each of `endpoints` (their ids). A message id already written (the
/// same event recorded twice) writes nothing: whether it was written.
pub(super) async fn write(
    conn: &mut AnyConnection,
    tenant: &str,
    event: EventType,
    data: Value,
    message_id: &str,
    endpoints: &[String],
    now: i64,
) -> Result<bool, sqlx::Error> {
    if endpoints.is_empty() {
        return Ok(false);
    }
    let body = json!({ "type": event.as_str(), "timestamp": rfc3339(now), "data": data });
    let fresh = sqlx::query(
        "INSERT INTO webhook_messages (id, tenant_id, event_type, payload, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(message_id)
    .bind(tenant)
    .bind(event.as_str())
    .bind(body.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if fresh != 1 {
        return Ok(false);
    }
    for endpoint in endpoints {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, tenant_id, message_id, endpoint_id, event_type, \
             status, attempts, next_attempt_at_ms, lease_until_ms, last_status, last_error, \
             created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, 0, NULL, NULL, $6, $6)",
        )
        .bind(new_id(DELIVERY_PREFIX))
        .bind(tenant)
        .bind(message_id)
        .bind(endpoint)
        .bind(event.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// `now` (ms) as RFC 3339 in UTC.
fn rfc3339(now_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_narrow_run_events_only() {
        let sub = |agents: &[&str], triggers: &[&str]| Subscriber {
            id: "whep_a".into(),
            event_types: vec![EventType::RunCompleted, EventType::BountyFunded],
            agent_ids: agents.iter().map(|a| a.to_string()).collect(),
            trigger_ids: triggers.iter().map(|t| t.to_string()).collect(),
        };
        let run = |agent: &'static str, trigger: Option<&'static str>| {
            Some(Subject {
                agent_id: agent,
                trigger_id: trigger,
            })
        };
        let all = sub(&[], &[]);
        assert!(all.wants(EventType::RunCompleted, run("agt_a", None)));
        assert!(!all.wants(EventType::RunFailed, run("agt_a", None)));
        let agent = sub(&["agt_a"], &[]);
        assert!(agent.wants(EventType::RunCompleted, run("agt_a", Some("sch_x"))));
        assert!(!agent.wants(EventType::RunCompleted, run("agt_b", None)));
        // Not a run event: not filtered.
        assert!(agent.wants(EventType::BountyFunded, None));
        let trigger = sub(&[], &["sch_x"]);
        assert!(trigger.wants(EventType::RunCompleted, run("agt_b", Some("sch_x"))));
        assert!(!trigger.wants(EventType::RunCompleted, run("agt_b", Some("sch_y"))));
        assert!(!trigger.wants(EventType::RunCompleted, run("agt_b", None)));
        let both = sub(&["agt_a"], &["sch_x"]);
        assert!(both.wants(EventType::RunCompleted, run("agt_a", Some("sch_x"))));
        assert!(!both.wants(EventType::RunCompleted, run("agt_b", Some("sch_x"))));
        assert!(!both.wants(EventType::RunCompleted, run("agt_a", None)));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(1_614_265_330_000), "2021-02-25T15:02:10Z");
    }
}
