//! `agent-relay`: messages between agents (`delta:agent/agents`).
//!
//! Input `{"send": [{"to": "<name or id>", "message": <JSON>}, ...]}`:
//! sends each message in order and returns `{"sent": [...]}`, one entry per
//! message: `{"message_id": ..., "run_id": ...}` or `{"error": "<code>"}`.
//!
//! A run a message started (its input is the host's
//! `{"message", "message_id", "from"}`): returns `{"received": <message>,
//! "message_id": ..., "from": "<sender's name>"}`; when the message holds
//! `"forward_to": "<agent>"` it also sends the same message on to that
//! agent and says how that went under `"forwarded"` (as in `sent`).

use delta_sdk::agents::{self, Incoming};
use delta_sdk::prelude::*;
use delta_sdk::serde_json::{Value, json};

#[derive(Deserialize)]
struct Outgoing {
    to: String,
    message: Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Received(Incoming<Value>),
    Send { send: Vec<Outgoing> },
}

fn send(to: &str, message: &Value) -> Value {
    match agents::send(to, message) {
        Ok(sent) => json!({ "message_id": sent.message_id, "run_id": sent.run_id }),
        Err(e) => {
            warn!("message to {to}: {e}");
            json!({ "error": e.code() })
        }
    }
}

struct Relay;

impl Agent for Relay {
    type Input = Input;
    type Output = Value;

    fn run(_ctx: &Context, input: Input) -> Result<Value, AgentError> {
        match input {
            Input::Send { send: messages } => {
                let sent: Vec<Value> = messages.iter().map(|m| send(&m.to, &m.message)).collect();
                Ok(json!({ "sent": sent }))
            }
            Input::Received(incoming) => {
                info!(
                    "message {} from {}",
                    incoming.message_id, incoming.from.agent_name
                );
                let forwarded = incoming
                    .message
                    .get("forward_to")
                    .and_then(Value::as_str)
                    .map(|to| send(to, &incoming.message));
                Ok(json!({
                    "received": incoming.message,
                    "message_id": incoming.message_id,
                    "from": incoming.from.agent_name,
                    "forwarded": forwarded,
                }))
            }
        }
    }
}

delta_sdk::export_agent!(Relay);
