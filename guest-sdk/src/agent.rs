//! The `agent` world: the [`Agent`] trait, its [`Context`] and
//! [`AgentError`].

use core::fmt;
use core::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An agent: turns one task input into one output.
///
/// Implement it on a unit struct and export it with
/// [`export_agent!`](crate::export_agent). For each task the SDK:
///
/// 1. parses the task's JSON input into [`Agent::Input`]; a parse failure is
///    returned to the caller as [`AgentError`] with code `invalid-input`, the
///    serde error as message and `retryable: false`, without calling
///    [`Agent::run`];
/// 2. calls [`Agent::run`] with the task's [`Context`];
/// 3. serializes the returned [`Agent::Output`] to JSON (a serialization
///    failure becomes the error `output-not-serializable`).
///
/// A panic is not an error: the panic message is logged at error level and
/// the run traps (the host reports a crash). Return `Err` for failures the
/// caller should see as the agent's own.
pub trait Agent {
    /// The task input, deserialized from the task's JSON `input`. Use
    /// `serde_json::Value` to accept any JSON document, or
    /// `serde::de::IgnoredAny` to ignore it.
    type Input: DeserializeOwned;
    /// The output, serialized to JSON as the run's output body.
    type Output: Serialize;

    /// Handle one task.
    fn run(ctx: &Context, input: Self::Input) -> Result<Self::Output, AgentError>;
}

/// Metadata of the task being run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    run_id: String,
    agent_id: String,
    tenant_id: String,
    deadline_ms: u64,
}

impl Context {
    /// A context with the given metadata (for tests; the SDK builds the real
    /// one from the task).
    pub fn new(
        run_id: impl Into<String>,
        agent_id: impl Into<String>,
        tenant_id: impl Into<String>,
        deadline_ms: u64,
    ) -> Self {
        Context {
            run_id: run_id.into(),
            agent_id: agent_id.into(),
            tenant_id: tenant_id.into(),
            deadline_ms,
        }
    }

    /// Unique id of this run, assigned by the host (opaque).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Id of the agent deployment being run.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Tenant that owns the agent.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// Wall-clock time left for this run when it was entered, in
    /// milliseconds. The host interrupts the run when it reaches zero.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// [`deadline_ms`](Self::deadline_ms) as a [`Duration`].
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// A failure the agent reports on purpose, returned to the caller.
///
/// The errors of the capability wrappers convert into it with `?`
/// ([`LlmError`](crate::llm::LlmError) → `llm-…`,
/// [`SendError`](crate::messaging::SendError) → `messaging-…`,
/// [`BudgetError`](crate::budget::BudgetError) → `budget-…`).
///
/// ```
/// use delta_sdk::AgentError;
///
/// let e = AgentError::new("upstream-failed", "the weather service timed out");
/// assert!(!e.retryable);
/// assert!(AgentError::retryable("busy", "try later").retryable);
/// assert_eq!(e.to_string(), "upstream-failed: the weather service timed out");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentError {
    /// Machine-readable kebab-case code, for example `invalid-input` or
    /// `upstream-failed`.
    pub code: String,
    /// Human-readable explanation, shown to the caller.
    pub message: String,
    /// Whether running the same task again may succeed.
    pub retryable: bool,
}

impl AgentError {
    /// The code of the error the SDK returns when the task input does not
    /// parse into [`Agent::Input`].
    pub const INVALID_INPUT: &'static str = "invalid-input";

    /// A non-retryable error.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        AgentError {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A retryable error.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        AgentError::new(code, message).with_retryable(true)
    }

    /// A non-retryable [`INVALID_INPUT`](Self::INVALID_INPUT) error, for
    /// input the agent rejects after parsing.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        AgentError::new(Self::INVALID_INPUT, message)
    }

    /// Set whether the error is retryable.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AgentError {}

/// Run agent `A` on a JSON input exactly as the exported `run` does (parse
/// the input, call [`Agent::run`], serialize the output) and return the JSON
/// output body. Meant for unit tests on the host.
///
/// ```
/// use delta_sdk::prelude::*;
///
/// struct Double;
/// impl Agent for Double {
///     type Input = u64;
///     type Output = u64;
///     fn run(_ctx: &Context, n: u64) -> Result<u64, AgentError> {
///         Ok(n * 2)
///     }
/// }
///
/// let ctx = Context::new("run-1", "agent-1", "tenant-1", 1_000);
/// assert_eq!(delta_sdk::run_agent::<Double>(&ctx, "21").unwrap(), "42");
/// let err = delta_sdk::run_agent::<Double>(&ctx, "\"x\"").unwrap_err();
/// assert_eq!(err.code, "invalid-input");
/// ```
pub fn run_agent<A: Agent>(ctx: &Context, input: &str) -> Result<String, AgentError> {
    let input: A::Input =
        serde_json::from_str(input).map_err(|e| AgentError::invalid_input(e.to_string()))?;
    let output = A::run(ctx, input)?;
    serde_json::to_string(&output)
        .map_err(|e| AgentError::new("output-not-serializable", e.to_string()))
}

pub(crate) mod export {
    use core::marker::PhantomData;

    use super::{Agent, Context, run_agent};
    use crate::bindings::agent::Guest;
    use crate::bindings::verifier::delta::agent::types as raw;

    /// Implements the generated `Guest` trait of the agent world for any
    /// [`Agent`].
    #[derive(Debug)]
    pub struct AgentExport<A>(PhantomData<A>);

    impl<A: Agent> Guest for AgentExport<A> {
        fn run(task: raw::Task) -> Result<raw::Output, raw::AgentError> {
            crate::panic_hook::install();
            let ctx = Context {
                run_id: task.run_id,
                agent_id: task.agent_id,
                tenant_id: task.tenant_id,
                deadline_ms: task.deadline_ms,
            };
            match run_agent::<A>(&ctx, &task.input) {
                Ok(body) => Ok(raw::Output { body }),
                Err(e) => Err(raw::AgentError {
                    code: e.code,
                    message: e.message,
                    retryable: e.retryable,
                }),
            }
        }
    }
}

/// Export a type implementing [`Agent`] as the component's `run` function.
///
/// Use it exactly once, at the top level of a `cdylib` crate built for
/// `wasm32-wasip2`. It also installs (once) a panic hook that writes the
/// panic message to the run's log at error level.
///
/// ```
/// use delta_sdk::prelude::*;
///
/// struct Echo;
/// impl Agent for Echo {
///     type Input = serde_json::Value;
///     type Output = serde_json::Value;
///     fn run(_ctx: &Context, input: serde_json::Value) -> Result<serde_json::Value, AgentError> {
///         Ok(input)
///     }
/// }
///
/// delta_sdk::export_agent!(Echo);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_agent {
    ($agent:ty) => {
        const _: () = {
            type __DeltaAgentExport = $crate::__private::AgentExport<$agent>;
            $crate::bindings::agent::__export_agent_world!(
                __DeltaAgentExport with_types_in $crate::bindings::agent
            );
        };
    };
}
