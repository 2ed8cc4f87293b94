//! Guest SDK for Delta agents and bounty verifiers.
//!
//! Delta runs agents as WebAssembly components under a fixed WIT contract
//! (`delta:agent@0.1.0`, in `wit/agent.wit`). This crate hides the generated
//! bindings behind a small API:
//!
//! * [`Agent`] + [`export_agent!`]: the task input arrives as your own
//!   `Deserialize` type, the output leaves as your own `Serialize` type, and
//!   the task metadata is in a [`Context`]. Return [`AgentError`] for failures
//!   the caller should see; `?` works on every capability error.
//! * [`Verifier`] + [`export_verifier!`]: judge a JSON submission against a
//!   JSON spec and return a [`Verdict`].
//! * Capabilities: [`log`] (and the [`info!`], [`warn!`], ... macros),
//!   [`llm`], [`messaging`], [`budget`], [`kv`] (durable state), [`http`]
//!   (outbound requests under an allow-list) and [`agents`] (messages to
//!   other agents).
//!
//! # Quick start
//!
//! A `cdylib` crate depending on `delta-sdk` and `serde` (with the `derive`
//! feature), built with `cargo build --release --target wasm32-wasip2`:
//!
//! ```
//! use delta_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Input {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     greeting: String,
//! }
//!
//! struct Hello;
//!
//! impl Agent for Hello {
//!     type Input = Input;
//!     type Output = Greeting;
//!
//!     fn run(_ctx: &Context, input: Input) -> Result<Greeting, AgentError> {
//!         info!("greeting {}", input.name);
//!         Ok(Greeting { greeting: format!("Hello, {}!", input.name) })
//!     }
//! }
//!
//! delta_sdk::export_agent!(Hello);
//!
//! // The same code path as the exported `run`, usable in native unit tests:
//! let ctx = Context::new("run-1", "hello", "tenant-1", 30_000);
//! let out = delta_sdk::run_agent::<Hello>(&ctx, r#"{"name": "Ada"}"#).unwrap();
//! assert_eq!(out, r#"{"greeting":"Hello, Ada!"}"#);
//! let err = delta_sdk::run_agent::<Hello>(&ctx, "{}").unwrap_err();
//! assert_eq!(err.code, "invalid-input");
//! ```
//!
//! # Behaviour worth knowing
//!
//! * A task input that does not parse into [`Agent::Input`] is answered with
//!   `AgentError { code: "invalid-input", message: <serde error>, retryable:
//!   false }` without calling [`Agent::run`].
//! * The export macros install a panic hook (once) that writes the panic
//!   message to the run's log at error level before the standard hook runs;
//!   the run then traps and the host reports a crash.
//! * A verifier component imports only `delta:agent/log` (plus whatever the
//!   Rust standard library needs from WASI).
//! * Compiled for a non-WebAssembly target (native unit tests), logging
//!   goes to stderr and [`llm`], [`messaging`], [`budget`] and [`kv`] behave as on a
//!   node where they are not configured (`Err(NotConfigured)`).
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

#[allow(unsafe_code, missing_docs, missing_debug_implementations, clippy::all)]
pub mod bindings;

mod agent;
pub mod agents;
pub mod budget;
pub mod http;
pub mod kv;
pub mod llm;
pub mod log;
pub mod messaging;
mod panic_hook;
mod shortfall;
mod verifier;

pub use agent::{Agent, AgentError, Context, run_agent};
pub use shortfall::Shortfall;
pub use verifier::{Verdict, Verifier, run_verifier};

/// Re-export of `serde`, so `#[serde(crate = "delta_sdk::serde")]` works
/// without a direct dependency.
#[doc(no_inline)]
pub use serde;
/// Re-export of `serde_json` (for `serde_json::Value` inputs and outputs).
#[doc(no_inline)]
pub use serde_json;

/// Everything an agent or verifier usually needs: `use delta_sdk::prelude::*;`.
///
/// Brings in the [`Agent`] and [`Verifier`] traits and their types, the
/// [`llm`], [`messaging`], [`budget`], [`kv`], [`http`] and [`agents`] modules, the logging macros and
/// serde's `Deserialize` / `Serialize` (the derives still need `serde` as a
/// dependency of your crate). The [`log`] module is left out so it cannot
/// clash with the `log` crate; use the macros or `delta_sdk::log`.
pub mod prelude {
    pub use crate::{Agent, AgentError, Context, Verdict, Verifier};
    pub use crate::{agents, budget, http, kv, llm, messaging};
    pub use crate::{debug, error, info, trace, warn};
    pub use serde::{Deserialize, Serialize};
}

/// Implementation details of the export macros. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::agent::export::AgentExport;
    pub use crate::verifier::export::VerifierExport;
}
