//! Result webhooks (issue 14): `run.completed` and `run.failed`, queued by
//! whatever records a run's end, in its transaction.
//!
//! A run ends once per row transition: to `finished` (a usage report,
//! `crate::runs::finish_from_usage`, or the node's answer,
//! `store_status`; both update only a row not yet finished, so a run
//! re-queued and delivered twice finishes once) or to `dead`
//! (`crate::dispatch::sql`, when no node took it). A finished run's message
//! id is derived from its run id, so even a second transition could not
//! queue a second `run.completed`; a dead run that is retried
//! (`POST /v1/runs/{id}/retry`) and ends again is a new end, with its own
//! message.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use sqlx::{AnyConnection, Row as _};

use super::model::EventType;
use super::outbox::{Subject, Subscriber, subscribers, write};

/// Tenants' endpoints, read once for several run ends: a usage batch or a
/// lost node ends many runs, and each end would otherwise read its
/// tenant's endpoints again (one more query per run on the hot usage
/// path). Scope one to the work that ends the runs: an endpoint added
/// meanwhile is seen by the next batch.
#[derive(Debug, Default)]
pub struct Endpoints(HashMap<String, Vec<Subscriber>>);

impl Endpoints {
    async fn of(
        &mut self,
        conn: &mut AnyConnection,
        tenant: &str,
    ) -> Result<&[Subscriber], sqlx::Error> {
        if !self.0.contains_key(tenant) {
            let subs = subscribers(conn, tenant).await?;
            self.0.insert(tenant.to_owned(), subs);
        }
        Ok(self.0.get(tenant).map_or(&[], Vec::as_slice))
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy)]
pub enum RunEnd<'a> {
    /// It ran to an outcome: the node's full outcome (`{"status":
    /// "completed", "output": "..."}`) when the caller has it, else the
    /// outcome's name stored with the run is used (the output is then
    /// absent: it was too large to report).
    Finished(Option<&'a Value>),
    /// No node took it after `[runs] max_deliveries` deliveries; why the
    /// last one failed.
    Dead(&'a str),
}

/// The usage fields a result webhook carries (the per-message log and the
/// ids repeated elsewhere stay out).
const USAGE_FIELDS: [&str; 7] = [
    "fuel_used",
    "wall_time_us",
    "peak_memory_bytes",
    "llm",
    "messages",
    "kv",
    "http",
];

/// Queue the result webhook of run `run_id` of `tenant`, which `conn` (the
/// transaction that recorded its end, already updated) has just ended as
/// `end`: `run.completed` when the outcome is `completed`, else
/// `run.failed`, to the tenant's endpoints subscribed to it whose filters
/// match the run's agent and trigger. Nothing is read when no endpoint
/// subscribes to run events.
pub async fn run_ended(
    conn: &mut AnyConnection,
    endpoints: &mut Endpoints,
    tenant: &str,
    run_id: &str,
    end: RunEnd<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let subs = endpoints.of(conn, tenant).await?;
    if !subs
        .iter()
        .any(|s| s.subscribes_to_any(&[EventType::RunCompleted, EventType::RunFailed]))
    {
        return Ok(());
    }
    let Some(row) = sqlx::query(
        "SELECT r.agent_id, r.node_id, r.status, r.outcome, r.usage, r.created_at_ms, \
         r.finished_at_ms, r.trigger_kind, r.trigger_id, q.deliveries \
         FROM runs r LEFT JOIN run_queue q ON q.run_id = r.id \
         WHERE r.id = $1 AND r.tenant_id = $2",
    )
    .bind(run_id)
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let agent_id: String = row.try_get("agent_id")?;
    let trigger_id: Option<String> = row.try_get("trigger_id")?;
    let stored_outcome: Option<String> = row.try_get("outcome")?;
    let usage: Option<String> = row.try_get("usage")?;
    let (event, message_id, mut data) = match end {
        RunEnd::Finished(outcome) => {
            let outcome = outcome.cloned().unwrap_or_else(|| {
                stored_outcome
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or(Value::Null)
            });
            let (event, fields) = outcome_fields(&outcome);
            // One finish per run: the id says so to the receiver, and the
            // outbox writes an id once.
            (event, format!("msg_{run_id}"), fields)
        }
        RunEnd::Dead(error) => {
            let mut fields = Map::new();
            fields.insert("outcome".into(), json!("dead"));
            fields.insert(
                "error".into(),
                json!({ "code": "undeliverable", "message": error }),
            );
            (
                EventType::RunFailed,
                format!("msg_{run_id}_dead_{now}"),
                fields,
            )
        }
    };
    let targets: Vec<String> = subs
        .iter()
        .filter(|s| {
            s.wants(
                event,
                Some(Subject {
                    agent_id: &agent_id,
                    trigger_id: trigger_id.as_deref(),
                }),
            )
        })
        .map(|s| s.id().to_owned())
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    data.insert("run_id".into(), json!(run_id));
    data.insert("agent_id".into(), json!(agent_id));
    data.insert(
        "node_id".into(),
        json!(row.try_get::<String, _>("node_id")?),
    );
    data.insert("status".into(), json!(row.try_get::<String, _>("status")?));
    data.insert("usage".into(), usage_summary(usage.as_deref()));
    data.insert(
        "trigger".into(),
        json!({ "kind": row.try_get::<String, _>("trigger_kind")?, "id": trigger_id }),
    );
    data.insert(
        "deliveries".into(),
        json!(row.try_get::<Option<i64>, _>("deliveries")?),
    );
    data.insert(
        "created_at_ms".into(),
        json!(row.try_get::<i64, _>("created_at_ms")?),
    );
    data.insert(
        "finished_at_ms".into(),
        json!(row.try_get::<Option<i64>, _>("finished_at_ms")?),
    );
    write(
        conn,
        tenant,
        event,
        Value::Object(data),
        &message_id,
        &targets,
        now,
    )
    .await?;
    Ok(())
}

/// The event of a finished run's `outcome` and the fields it contributes:
/// `outcome` (its name), and `output` (the guest's JSON document) when it
/// completed, or `error` (the outcome's other fields: a message, the
/// agent's code) when not. A completed run whose output is unknown (too
/// large to be reported) says `output_omitted`.
fn outcome_fields(outcome: &Value) -> (EventType, Map<String, Value>) {
    let name = outcome
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let mut fields = Map::new();
    fields.insert("outcome".into(), json!(name));
    if name == "completed" {
        match outcome.get("output") {
            // The node keeps the output as the JSON text the guest wrote.
            Some(Value::String(text)) => {
                let parsed = serde_json::from_str(text).unwrap_or_else(|_| json!(text));
                fields.insert("output".into(), parsed);
            }
            Some(other) => {
                fields.insert("output".into(), other.clone());
            }
            None => {
                fields.insert("output_omitted".into(), json!(true));
            }
        }
        return (EventType::RunCompleted, fields);
    }
    let mut error: Map<String, Value> = outcome
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.as_str() != "status")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    error.insert("code".into(), json!(name));
    fields.insert("error".into(), Value::Object(error));
    (EventType::RunFailed, fields)
}

/// The usage a result webhook carries, from the stored usage record.
fn usage_summary(stored: Option<&str>) -> Value {
    let Some(Value::Object(all)) = stored.and_then(|u| serde_json::from_str(u).ok()) else {
        return Value::Null;
    };
    Value::Object(
        all.into_iter()
            .filter(|(k, _)| USAGE_FIELDS.contains(&k.as_str()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_outcome_carries_its_output_and_others_an_error() {
        let (event, f) =
            outcome_fields(&json!({ "status": "completed", "output": "{\"answer\":42}" }));
        assert_eq!(event, EventType::RunCompleted);
        assert_eq!(f["output"], json!({ "answer": 42 }));
        assert!(f.get("error").is_none());

        let (event, f) = outcome_fields(&json!({ "status": "completed" }));
        assert_eq!(event, EventType::RunCompleted);
        assert_eq!(f["output_omitted"], true);

        let (event, f) = outcome_fields(&json!({ "status": "trap", "message": "unreachable" }));
        assert_eq!(event, EventType::RunFailed);
        assert_eq!(f["outcome"], "trap");
        assert_eq!(
            f["error"],
            json!({ "code": "trap", "message": "unreachable" })
        );
        assert!(f.get("output").is_none());

        let (event, _) = outcome_fields(&Value::Null);
        assert_eq!(event, EventType::RunFailed);
    }

    #[test]
    fn the_usage_summary_leaves_the_message_log_out() {
        let u = usage_summary(Some(
            r#"{"run_id":"r","fuel_used":7,"message_log":[{"x":1}],"result":{"status":"completed"}}"#,
        ));
        assert_eq!(u, json!({ "fuel_used": 7 }));
        assert_eq!(usage_summary(None), Value::Null);
    }
}
