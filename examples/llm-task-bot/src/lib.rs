//! `llm-task-bot` (seed 000's task bot): answers a task with an LLM, paying
//! from its token budget, and asks its parent agent for more tokens when the
//! budget cannot cover the call.
//!
//! * Input: `{"task": "<string>", "model": "<model or alias>"?, "max_tokens": N?}`
//!   (model defaults to `default`, max_tokens to 256).
//! * Output: `{"answer": "...", "model": "...", "input_tokens": N,
//!   "output_tokens": N, "remaining": N}` (`remaining`: available tokens
//!   after the call).
//! * Budget exceeded: requests `needed - available` more tokens from the
//!   parent (`budget.request`) and returns the retryable agent error
//!   `budget-requested` whose message names the request id and its status.
//! * Other LLM errors are returned as `llm-<reason>`.

use delta_sdk::llm::{CompletionRequest, LlmError};
use delta_sdk::prelude::*;

#[derive(Deserialize)]
struct Input {
    task: String,
    model: Option<String>,
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct Answer {
    answer: String,
    model: String,
    input_tokens: u32,
    output_tokens: u32,
    remaining: u64,
}

struct TaskBot;

impl Agent for TaskBot {
    type Input = Input;
    type Output = Answer;

    fn run(_ctx: &Context, input: Input) -> Result<Answer, AgentError> {
        let model = input.model.unwrap_or_else(|| "default".to_owned());
        let result = CompletionRequest::new(&model)
            .system("You are a concise assistant. Answer in one paragraph.")
            .user(&input.task)
            .max_tokens(input.max_tokens.unwrap_or(256))
            .complete();
        let completion = match result {
            Ok(completion) => completion,
            Err(LlmError::BudgetExceeded(shortfall)) => {
                let missing = shortfall.needed.saturating_sub(shortfall.available).max(1);
                let request =
                    budget::request(missing, "llm-task-bot: budget too small for the task")?;
                warn!(
                    "asked the parent for {missing} tokens: request {}",
                    request.id
                );
                return Err(AgentError::retryable(
                    "budget-requested",
                    format!(
                        "budget too small; requested {missing} tokens (request {}, {:?})",
                        request.id, request.status
                    ),
                ));
            }
            Err(other) => return Err(other.into()),
        };
        let remaining = budget::remaining().map(|b| b.available).unwrap_or(0);
        info!(
            "answered with {} ({} + {} tokens)",
            completion.model, completion.usage.input_tokens, completion.usage.output_tokens
        );
        Ok(Answer {
            answer: completion.text,
            model: completion.model,
            input_tokens: completion.usage.input_tokens,
            output_tokens: completion.usage.output_tokens,
            remaining,
        })
    }
}

delta_sdk::export_agent!(TaskBot);
