//! `http-caller`: outbound HTTP (`delta:agent/http`).
//!
//! Input `{"url": U, "method": "get"|"post", "headers": [[name, value]...],
//! "body": "text"}`: sends the request and returns `{"status": S, "body":
//! "<answer as text>", "location": "<Location header or null>"}`, or
//! `{"error": "<code>", "detail": "<text>"}` when the host refused or the
//! request failed.

use delta_sdk::http::{Method, Request};
use delta_sdk::prelude::*;

#[derive(Deserialize)]
struct Input {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Answer {
        status: u16,
        body: String,
        location: Option<String>,
    },
    Refused {
        error: &'static str,
        detail: String,
    },
}

struct HttpCaller;

impl Agent for HttpCaller {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, AgentError> {
        let method = match input.method.as_deref().unwrap_or("get") {
            "get" => Method::Get,
            "post" => Method::Post,
            other => return Err(AgentError::invalid_input(format!("method {other}"))),
        };
        let mut request = Request::new(method, input.url).body(input.body.into_bytes());
        for (name, value) in input.headers {
            request = request.header(name, value);
        }
        Ok(match request.send() {
            Ok(answer) => Output::Answer {
                status: answer.status,
                location: answer
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("location"))
                    .map(|(_, v)| v.clone()),
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            },
            Err(e) => Output::Refused {
                error: e.code(),
                detail: e.to_string(),
            },
        })
    }
}

delta_sdk::export_agent!(HttpCaller);
