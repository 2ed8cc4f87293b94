//! The outbox: events written by the operation that causes them, in its
//! own transaction.

use serde_json::{Value, json};
use sqlx::{AnyConnection, Row as _};

use crate::db::new_id;

use super::model::{DELIVERY_PREFIX, EventType, MESSAGE_PREFIX};

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
    let rows = sqlx::query("SELECT id, event_types FROM webhook_endpoints WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await?;
    let mut endpoints = Vec::new();
    for row in &rows {
        let types: String = row.try_get("event_types")?;
        // Stored by this module as a JSON array of names.
        let subscribed: Vec<EventType> = serde_json::from_str(&types).unwrap_or_default();
        if subscribed.contains(&event) {
            endpoints.push(row.try_get::<String, _>("id")?);
        }
    }
    if endpoints.is_empty() {
        return Ok(());
    }
    let message = new_id(MESSAGE_PREFIX);
    let body = json!({ "type": event.as_str(), "timestamp": rfc3339(now), "data": data });
    sqlx::query(
        "INSERT INTO webhook_messages (id, tenant_id, event_type, payload, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&message)
    .bind(tenant)
    .bind(event.as_str())
    .bind(body.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for endpoint in endpoints {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, tenant_id, message_id, endpoint_id, event_type, \
             status, attempts, next_attempt_at_ms, lease_until_ms, last_status, last_error, \
             created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, 0, NULL, NULL, $6, $6)",
        )
        .bind(new_id(DELIVERY_PREFIX))
        .bind(tenant)
        .bind(&message)
        .bind(&endpoint)
        .bind(event.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
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
    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(1_614_265_330_000), "2021-02-25T15:02:10Z");
    }
}
