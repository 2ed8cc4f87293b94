//! How an invocation ended, and what it consumed.

use delta_host_api::log::{LogLine, LogStats};
use serde::{Deserialize, Serialize};

/// The end of one invocation. Every way a guest can end is one of these;
/// none of them is a host error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The guest returned normally. `output` is its JSON body (for a
    /// verifier, the verdict as JSON).
    Completed {
        /// The output JSON document.
        output: String,
    },
    /// The agent returned its own error.
    AgentError {
        /// Agent-chosen machine-readable code.
        code: String,
        /// Explanation.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// The fuel budget ran out.
    OutOfFuel,
    /// The wall-clock deadline passed.
    Deadline,
    /// The guest needed more linear memory than its cap.
    MemoryLimit,
    /// The guest's wasm stack overflowed.
    StackOverflow,
    /// The output exceeded the size limit.
    OutputTooLarge {
        /// Bytes the guest returned.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The output is not a JSON document.
    InvalidOutput {
        /// The JSON parser's complaint.
        message: String,
    },
    /// The guest panicked (Rust `panic!`, `abort`).
    GuestPanic {
        /// The panic message, from the guest's stderr when it wrote one.
        message: String,
    },
    /// The guest trapped for another reason (bad memory access, integer
    /// division by zero, ...).
    Trap {
        /// Wasmtime's description of the trap.
        message: String,
    },
    /// The run was cancelled (agent deleted, node draining).
    Cancelled,
}

/// Coarse classes of outcomes, e.g. for CLI exit codes and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeClass {
    /// Completed.
    Success,
    /// The agent reported an error.
    AgentError,
    /// A limit stopped the guest (fuel, deadline, memory, stack, output).
    LimitHit,
    /// The guest crashed (panic, trap, invalid output).
    Crash,
    /// Stopped from outside.
    Cancelled,
}

impl Outcome {
    /// The class of this outcome.
    pub fn class(&self) -> OutcomeClass {
        match self {
            Outcome::Completed { .. } => OutcomeClass::Success,
            Outcome::AgentError { .. } => OutcomeClass::AgentError,
            Outcome::OutOfFuel
            | Outcome::Deadline
            | Outcome::MemoryLimit
            | Outcome::StackOverflow
            | Outcome::OutputTooLarge { .. } => OutcomeClass::LimitHit,
            Outcome::GuestPanic { .. } | Outcome::Trap { .. } | Outcome::InvalidOutput { .. } => {
                OutcomeClass::Crash
            }
            Outcome::Cancelled => OutcomeClass::Cancelled,
        }
    }

    /// Short kebab-case name (the `status` field), e.g. for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => "completed",
            Outcome::AgentError { .. } => "agent-error",
            Outcome::OutOfFuel => "out-of-fuel",
            Outcome::Deadline => "deadline",
            Outcome::MemoryLimit => "memory-limit",
            Outcome::StackOverflow => "stack-overflow",
            Outcome::OutputTooLarge { .. } => "output-too-large",
            Outcome::InvalidOutput { .. } => "invalid-output",
            Outcome::GuestPanic { .. } => "guest-panic",
            Outcome::Trap { .. } => "trap",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What an invocation consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Fuel burned (0 when the engine does not meter fuel).
    pub fuel_used: u64,
    /// Wall time from store creation to the end, in microseconds.
    pub wall_time_us: u64,
    /// Highest total linear memory of the instance, in bytes.
    pub peak_memory_bytes: u64,
    /// Logging counters.
    pub log: LogStats,
    /// Bytes the guest wrote to stdout beyond the kept prefix.
    pub stdout_dropped_bytes: u64,
    /// Bytes the guest wrote to stderr beyond the kept prefix.
    pub stderr_dropped_bytes: u64,
}

/// Everything about one finished invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// What it consumed.
    pub usage: Usage,
    /// Accepted log lines.
    pub logs: Vec<LogLine>,
    /// Kept prefix of the guest's stdout.
    pub stdout: String,
    /// Kept prefix of the guest's stderr.
    pub stderr: String,
}
