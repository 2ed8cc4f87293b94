//! Wire formats: request bodies and response parsing for the Anthropic
//! Messages API and the OpenAI-compatible Chat Completions API.
//!
//! Bodies are typed structs rather than `json!` values so that an `f32`
//! temperature serialises as written (`0.7`, not `0.699999988079071`).

use delta_host_api::llm::{CompletionRequest, FinishReason, Role};
use serde::{Deserialize, Serialize};

use crate::config::ProviderKind;

/// The API path appended to a provider's base URL.
pub(crate) fn path(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "/v1/messages",
        ProviderKind::Openai => "/v1/chat/completions",
    }
}

/// The JSON body for `kind`, asking for `model` (already resolved).
pub(crate) fn request_body(
    kind: ProviderKind,
    model: &str,
    req: &CompletionRequest,
) -> Result<Vec<u8>, serde_json::Error> {
    match kind {
        ProviderKind::Anthropic => serde_json::to_vec(&anthropic_body(model, req)),
        ProviderKind::Openai => serde_json::to_vec(&openai_body(model, req)),
    }
}

#[derive(Serialize)]
struct AnthropicRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop_sequences: &'a [String],
}

#[derive(Serialize)]
struct OpenAiRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    stop: &'a [String],
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// Anthropic has no system role in `messages`: every system message, wherever
/// it appears, is joined (blank line between) into the top-level `system`.
fn anthropic_body<'a>(model: &'a str, req: &'a CompletionRequest) -> AnthropicRequest<'a> {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    AnthropicRequest {
        model,
        max_tokens: req.max_tokens,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages: req
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| WireMessage {
                role: role_name(m.role),
                content: &m.content,
            })
            .collect(),
        temperature: req.temperature,
        stop_sequences: &req.stop,
    }
}

fn openai_body<'a>(model: &'a str, req: &'a CompletionRequest) -> OpenAiRequest<'a> {
    OpenAiRequest {
        model,
        max_tokens: req.max_tokens,
        messages: req
            .messages
            .iter()
            .map(|m| WireMessage {
                role: role_name(m.role),
                content: &m.content,
            })
            .collect(),
        temperature: req.temperature,
        stop: &req.stop,
    }
}

/// What the gateway needs from a successful response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    /// Generated text.
    pub text: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// `(input, output)` tokens, when the provider reported them.
    pub usage: Option<(u64, u64)>,
}

/// Parse a 2xx body. The error is serde's message, which names a position
/// and an expectation but never echoes the body.
pub(crate) fn parse_response(kind: ProviderKind, body: &[u8]) -> Result<Parsed, String> {
    match kind {
        ProviderKind::Anthropic => parse_anthropic(body),
        ProviderKind::Openai => parse_openai(body),
    }
}

#[derive(Deserialize)]
struct AnthropicResponse {
    #[serde(default)]
    content: Vec<AnthropicBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

fn parse_anthropic(body: &[u8]) -> Result<Parsed, String> {
    let resp: AnthropicResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let text = resp
        .content
        .into_iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text)
        .collect::<String>();
    let finish_reason = match resp.stop_reason.as_deref() {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        _ => FinishReason::Other,
    };
    let usage = resp
        .usage
        .and_then(|u| Some((u.input_tokens?, u.output_tokens?)));
    Ok(Parsed {
        text,
        finish_reason,
        usage,
    })
}

#[derive(Deserialize)]
struct OpenAiResponse {
    choices: Vec<OpenAiChoice>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    message: OpenAiMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiMessage {
    /// `null` when the model answered only with tool calls.
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

fn parse_openai(body: &[u8]) -> Result<Parsed, String> {
    let resp: OpenAiResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let choice = resp
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| "no choices in the response".to_owned())?;
    let finish_reason = match choice.finish_reason.as_deref() {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        _ => FinishReason::Other,
    };
    let usage = resp
        .usage
        .and_then(|u| Some((u.prompt_tokens?, u.completion_tokens?)));
    Ok(Parsed {
        text: choice.message.content.unwrap_or_default(),
        finish_reason,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use delta_host_api::llm::Message;

    fn req() -> CompletionRequest {
        CompletionRequest {
            model: "m".into(),
            messages: vec![
                Message {
                    role: Role::System,
                    content: "be brief".into(),
                },
                Message {
                    role: Role::User,
                    content: "hi".into(),
                },
            ],
            max_tokens: 10,
            temperature: Some(0.7),
            stop: vec![],
        }
    }

    #[test]
    fn temperature_serialises_as_written() {
        let body = request_body(ProviderKind::Openai, "m", &req()).expect("serialises");
        let text = String::from_utf8(body).expect("utf-8");
        assert!(text.contains("\"temperature\":0.7"), "{text}");
        assert!(!text.contains("\"stop\""), "{text}");
    }

    #[test]
    fn anthropic_usage_needs_both_counts() {
        let p = parse_anthropic(br#"{"content":[],"usage":{"input_tokens":3}}"#).expect("parses");
        assert_eq!(p.usage, None);
        assert_eq!(p.finish_reason, FinishReason::Other);
    }

    #[test]
    fn openai_without_choices_is_malformed() {
        assert!(parse_openai(br#"{"choices":[]}"#).is_err());
    }
}
