//! `sms-bot` (seed 000's SMS bot): sends the operator's approved
//! `verify-code` SMS template to an allowed phone number.
//!
//! * Input: `{"to": "<E.164 number>", "code": "<string>"}`.
//! * Sends: channel sms, template `verify-code`, variable `code`.
//! * Output: `{"message_id": "...", "tokens_charged": N}`.
//! * A refusal is returned as the agent error `messaging-<reason>`.

use delta_sdk::messaging::SendRequest;
use delta_sdk::prelude::*;

#[derive(Deserialize)]
struct Input {
    to: String,
    code: String,
}

#[derive(Serialize)]
struct Sent {
    message_id: String,
    tokens_charged: u64,
}

struct SmsBot;

impl Agent for SmsBot {
    type Input = Input;
    type Output = Sent;

    fn run(_ctx: &Context, input: Input) -> Result<Sent, AgentError> {
        let receipt = SendRequest::sms("verify-code", &input.to)
            .var("code", &input.code)
            .send()?;
        info!("sent verification code {}", receipt.message_id);
        Ok(Sent {
            message_id: receipt.message_id,
            tokens_charged: receipt.tokens_charged,
        })
    }
}

delta_sdk::export_agent!(SmsBot);
