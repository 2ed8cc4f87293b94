//! `email-bot` (seed 000's email bot): sends the operator's approved
//! `welcome` email template to an allowed recipient.
//!
//! * Input: `{"to": "<address>", "name": "<string>"}`.
//! * Sends: channel email, template `welcome`, variable `name`.
//! * Output: `{"message_id": "...", "tokens_charged": N}`.
//! * A refusal (template, recipient, rate limit, budget...) is returned as
//!   the agent error `messaging-<reason>`, e.g. `messaging-recipient-not-allowed`.

use delta_sdk::messaging::SendRequest;
use delta_sdk::prelude::*;

#[derive(Deserialize)]
struct Input {
    to: String,
    name: String,
}

#[derive(Serialize)]
struct Sent {
    message_id: String,
    tokens_charged: u64,
}

struct EmailBot;

impl Agent for EmailBot {
    type Input = Input;
    type Output = Sent;

    fn run(_ctx: &Context, input: Input) -> Result<Sent, AgentError> {
        let receipt = SendRequest::email("welcome", &input.to)
            .var("name", &input.name)
            .send()?;
        info!("sent welcome email {}", receipt.message_id);
        Ok(Sent {
            message_id: receipt.message_id,
            tokens_charged: receipt.tokens_charged,
        })
    }
}

delta_sdk::export_agent!(EmailBot);
