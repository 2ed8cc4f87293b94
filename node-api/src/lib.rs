//! The node API's wire types: deployments, runs and usage as a node stores
//! and serves them, and the headers both sides send.
//!
//! The node daemon (`delta-node`) and the control plane (`delta-control`)
//! both speak these shapes; this crate is all they share, so the control
//! plane never links the node (or Wasmtime). Fields are named for the wire:
//! a change here is an API change.

use std::collections::BTreeMap;

use delta_templates::{ChannelId, TemplateConfig};
use serde::{Deserialize, Serialize};

/// Names the tenant a component upload is compiled for (set by the control
/// plane on `PUT /v1/components/{sha256}`): its compiles take turns with
/// other tenants' and are charged to its hourly compile budget.
pub const TENANT_HEADER: &str = "x-delta-tenant";

/// Milliseconds since the Unix epoch (what the store and the API use).
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default()
}

/// Body of `PUT /v1/agents/{id}`: what the node runs for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The tenant that owns the agent (scopes runs, queues and metrics).
    pub tenant_id: String,
    /// The component's sha256 (hex), uploaded before with
    /// `PUT /v1/components/{sha256}`.
    pub component: String,
    /// Per-run limits; each is clamped by the node's maximums.
    #[serde(default)]
    pub limits: AgentLimits,
    /// What the agent may reach through its capabilities.
    #[serde(default)]
    pub grants: Grants,
}

/// Per-run limits of a deployment. `None` takes the node's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentLimits {
    /// Fuel per run.
    pub fuel: Option<u64>,
    /// Linear memory cap per run, bytes.
    pub memory_bytes: Option<u64>,
    /// Wall-clock deadline per run, milliseconds.
    pub timeout_ms: Option<u64>,
}

/// Capability grants of a deployment. Everything defaults to nothing. LLM
/// calls and messages are charged to the budget account named like the
/// agent (seed 000: every main agent and bot has its own budget).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// LLM models or aliases the agent may call.
    #[serde(default)]
    pub models: Vec<String>,
    /// Messaging channels it may use.
    #[serde(default)]
    pub channels: Vec<ChannelId>,
    /// Message templates it may use (ids). Empty: none.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Recipients it may reach (exact addresses, `*@domain`, E.164 numbers).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The definitions of its templates, as the control plane ships them
    /// (each `id` is what the guest names; `approved` as reviewed there).
    /// Present: these replace the node's `[messaging]` templates for this
    /// agent, so only a template approved in the control plane and granted
    /// to the agent can be sent. Absent: the node's own templates, limited
    /// by `templates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_templates: Option<Vec<TemplateConfig>>,
    /// Whether it may keep durable key-value state (`delta:agent/kv`).
    /// Absent (false) in deployments of older control planes, and not sent
    /// when false, so older nodes still accept the deployment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kv: bool,
    /// Outbound HTTP (`delta:agent/http`). Absent: no request leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpGrant>,
    /// Agents of the same tenant it may message (`delta:agent/agents`), by
    /// name or id. Empty: none; not sent when empty, so older nodes still
    /// accept the deployment. The control plane checks it again when a
    /// message arrives (it keeps the grant; a node only filters early).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
}

/// What an agent may reach over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// Allow-list entries: `api.example.com`, `*.example.com`,
    /// `http://host:8080` (https and the scheme's port unless named).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Names of the tenant's secrets its header values may use as
    /// `{{secret:NAME}}`.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// A deployment as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Agent id (from the URL).
    pub id: String,
    /// The deployment.
    #[serde(flatten)]
    pub spec: AgentSpec,
    /// Paused agents take no new runs; queued runs wait.
    pub paused: bool,
    /// When it was first deployed.
    pub created_at_ms: Millis,
    /// When it was last changed.
    pub updated_at_ms: Millis,
}

/// A component the node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// `agent` or `verifier`.
    pub world: String,
    /// When it was uploaded.
    pub created_at_ms: Millis,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for a slot.
    Queued,
    /// Executing.
    Running,
    /// Ended; `outcome` and `usage` are set.
    Finished,
}

impl RunStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished => "finished",
        }
    }

    /// Parse the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "finished" => Some(Self::Finished),
            _ => None,
        }
    }
}

/// A run accepted by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Run id (node-assigned).
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The task input (JSON).
    pub input: String,
    /// When it was accepted.
    pub created_at_ms: Millis,
}

/// How a run ended, with everything it used: stored with the run and queued
/// in the outbox in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedRun {
    /// The run.
    pub run_id: String,
    /// The outcome as `delta_runtime::Outcome` serializes it
    /// (`{"status": "completed", "output": ...}` and so on).
    pub outcome: serde_json::Value,
    /// Log lines the guest wrote (bounded by the runtime).
    pub logs: serde_json::Value,
    /// What it used; this is the record the reporter ships.
    pub usage: RunUsage,
    /// When the stored output and logs are hard-deleted.
    pub expires_at_ms: Millis,
    /// When it got an execution slot (none: cancelled while queued, or
    /// interrupted by a restart).
    #[serde(default)]
    pub started_at_ms: Option<Millis>,
}

/// Usage of one run: the unit the node reports to the control plane. Its
/// `run_id` is unique, so the control plane deduplicates by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUsage {
    /// The run.
    pub run_id: String,
    /// The agent.
    pub agent_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Outcome name (`completed`, `out-of-fuel`, `cancelled`, ...).
    pub outcome: String,
    /// Fuel consumed.
    pub fuel_used: u64,
    /// Wall time of the invocation, microseconds.
    pub wall_time_us: u64,
    /// Peak linear memory, bytes.
    pub peak_memory_bytes: u64,
    /// LLM tokens by model (as the provider named it).
    pub llm: BTreeMap<String, LlmTokens>,
    /// Messages by channel.
    pub messages: BTreeMap<String, MessageCounts>,
    /// When it ended.
    pub finished_at_ms: Millis,
    /// Every message attempt, oldest first, up to a bound per run (see
    /// `message_log_dropped`). Absent in records of older nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_log: Vec<MessageAttempt>,
    /// Attempts past the bound of `message_log`: counted, not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub message_log_dropped: u64,
    /// Key-value state operations (`delta:agent/kv`); absent when the run
    /// made none, and in records of older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvCounts>,
    /// Outbound HTTP requests (`delta:agent/http`); absent when the run
    /// made none, and in records of older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCounts>,
    /// Messages to other agents (`delta:agent/agents`); absent when the run
    /// sent none, and in records of older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_messages: Option<AgentMessageCounts>,
    /// The outcome as the node recorded it (`{"status": "completed",
    /// "output": "..."}`, `{"status": "trap", "message": ...}`), when its
    /// JSON is at most [`MAX_REPORTED_RESULT_BYTES`]: the control plane
    /// puts it in the run's result webhook (`run.completed`,
    /// `run.failed`) and does not store it. Absent when larger, and in
    /// records of older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// Largest outcome (its JSON, bytes) a usage record carries as `result`:
/// a batch of 500 records stays within a few MiB, and a receiver that needs
/// a larger output fetches the run (`GET /v1/runs/{id}`).
pub const MAX_REPORTED_RESULT_BYTES: usize = 16 * 1024;

/// Outbound HTTP requests of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCounts {
    /// Requests that got an answer (any status).
    pub requests: u64,
    /// Requests refused (allow-list, address, secret, limits) or failed.
    pub refused: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
}

/// Messages one run sent to other agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMessageCounts {
    /// Messages the control plane accepted.
    pub sent: u64,
    /// Messages refused (grant, receiver, size, depth, rate) or not taken.
    pub refused: u64,
    /// Bytes of the accepted messages.
    pub bytes: u64,
}

/// Key-value operations of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCounts {
    /// `get` and `list-prefix` calls answered.
    pub reads: u64,
    /// `set` and `compare-and-swap` calls that stored a value.
    pub writes: u64,
    /// `delete` calls answered.
    pub deletes: u64,
    /// `compare-and-swap` calls that found another version.
    pub conflicts: u64,
    /// Calls refused or failed otherwise (no grant, bounds, quota, store
    /// unavailable).
    pub refused: u64,
    /// Bytes of values stored by the writes.
    pub bytes_written: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One attempt to send a message, as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttempt {
    /// `email` or `sms`.
    pub channel: String,
    /// The template the guest named (clipped).
    pub template_id: String,
    /// The recipient the guest named (clipped; control characters replaced).
    pub recipient: String,
    /// `sent`, `refused` (a check said no) or `failed` (rendering, the
    /// ledger or the provider failed).
    pub status: String,
    /// The WIT `send-error` case (`template-not-approved`, ...); none when
    /// sent.
    #[serde(default)]
    pub reason: Option<String>,
    /// Budget tokens charged.
    #[serde(default)]
    pub tokens: u64,
    /// The provider's id for the message (SMTP reply, Twilio sid, outbox
    /// file); none unless sent.
    #[serde(default)]
    pub provider_id: Option<String>,
    /// When the attempt ended.
    pub at_ms: Millis,
}

/// LLM use of one model in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmTokens {
    /// Completed calls.
    pub calls: u64,
    /// Prompt tokens reported by the provider.
    pub input_tokens: u64,
    /// Completion tokens reported by the provider.
    pub output_tokens: u64,
}

/// Messages of one channel in one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// Accepted by the channel's backend.
    pub sent: u64,
    /// Refused by a check or the backend.
    pub refused: u64,
    /// Budget tokens charged for the sent ones.
    pub tokens: u64,
}

/// A run as stored and served by `GET /v1/runs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// Set once finished (until the expiry sweep deletes it).
    pub outcome: Option<serde_json::Value>,
    /// Set once finished (until the expiry sweep deletes it).
    pub logs: Option<serde_json::Value>,
    /// Set once finished.
    pub usage: Option<RunUsage>,
    /// Accepted at.
    pub created_at_ms: Millis,
    /// Started executing at.
    pub started_at_ms: Option<Millis>,
    /// Ended at.
    pub finished_at_ms: Option<Millis>,
    /// Output and logs are deleted after this.
    pub expires_at_ms: Option<Millis>,
}

/// A batch of usage records as the reporter sends it:
/// `POST {control_plane}/v1/nodes/usage` with `Idempotency-Key: {batch_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    /// Stable for the same set of records, so a resent batch is recognised.
    pub batch_id: String,
    /// The reporting node.
    pub node_id: String,
    /// The records, oldest first.
    pub records: Vec<RunUsage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_records_of_older_nodes_still_parse_and_empty_logs_are_not_sent() {
        let old = r#"{"run_id":"r","agent_id":"a","tenant_id":"t","outcome":"completed",
            "fuel_used":1,"wall_time_us":2,"peak_memory_bytes":3,"llm":{},"messages":{},
            "finished_at_ms":4}"#;
        let usage: RunUsage = serde_json::from_str(old).expect("an older record");
        assert!(usage.message_log.is_empty());
        assert_eq!(usage.message_log_dropped, 0);
        let json = serde_json::to_value(&usage).expect("json");
        assert!(json.get("message_log").is_none(), "{json}");
        assert!(json.get("message_log_dropped").is_none(), "{json}");

        let with_log = RunUsage {
            message_log: vec![MessageAttempt {
                channel: "sms".into(),
                template_id: "otp".into(),
                recipient: "+14155550100".into(),
                status: "refused".into(),
                reason: Some("rate-limited".into()),
                tokens: 0,
                provider_id: None,
                at_ms: 5,
            }],
            message_log_dropped: 2,
            ..usage
        };
        let back: RunUsage =
            serde_json::from_value(serde_json::to_value(&with_log).expect("json")).expect("parse");
        assert_eq!(back, with_log);
        // A deployment without template definitions serialises as before.
        let grants = serde_json::to_value(Grants::default()).expect("json");
        assert!(grants.get("message_templates").is_none(), "{grants}");
    }
}

/// Body of `POST /v1/verifications`: run a bounty's verifier component
/// (world `verifier`, uploaded before with `PUT /v1/components/{sha256}`)
/// once on a submission. The run gets no capability beyond `log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationRequest {
    /// The tenant the run is charged to (the bounty's owner).
    pub tenant_id: String,
    /// The verifier component's sha256 (hex).
    pub component: String,
    /// The bounty's specification, a JSON document.
    pub spec: String,
    /// The submission, a JSON document.
    pub submission: String,
    /// Fuel, memory and deadline; each clamped by the node's maximums.
    #[serde(default)]
    pub limits: AgentLimits,
}

/// Answer of `POST /v1/verifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationResult {
    /// How the run ended, the runtime's outcome (`{"status": "completed",
    /// "output": "<verdict JSON>"}`, `{"status": "out-of-fuel"}`, ...). The
    /// caller judges it: anything but a well-formed verdict is a failed
    /// verification.
    pub outcome: serde_json::Value,
    /// Fuel burnt.
    pub fuel_used: u64,
    /// Wall time, microseconds.
    pub wall_time_us: u64,
}
