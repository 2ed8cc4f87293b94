//! `hello-agent`: the smallest useful agent.
//!
//! * Input: `{"name": "<string>"}`.
//! * Logs one line at info level: `greeting <name>`.
//! * Output: `{"greeting":"Hello, <name>!"}`.
//! * An input that is not that shape (not JSON, `name` missing or not a
//!   string) is answered by the SDK with the agent error
//!   `{code: "invalid-input", message: <serde error>, retryable: false}`
//!   before `run` is called (so nothing is logged).

use delta_sdk::prelude::*;

/// The task input.
#[derive(Deserialize)]
struct Input {
    name: String,
}

/// The output.
#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

struct Hello;

impl Agent for Hello {
    type Input = Input;
    type Output = Greeting;

    fn run(_ctx: &Context, input: Input) -> Result<Greeting, AgentError> {
        info!("greeting {}", input.name);
        Ok(Greeting {
            greeting: format!("Hello, {}!", input.name),
        })
    }
}

delta_sdk::export_agent!(Hello);
