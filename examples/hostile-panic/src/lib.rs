//! `hostile-panic`: panics.
//!
//! * Input: any JSON document (ignored).
//! * Panics with the message `hostile-panic: deliberate panic`. The SDK's
//!   panic hook first writes one error-level log line
//!   `panicked at <file>:<line>:<col>: hostile-panic: deliberate panic`, the
//!   standard hook prints the panic to stderr, and the run then traps
//!   (`panic = "abort"`).

use delta_sdk::prelude::*;
use delta_sdk::serde::de::IgnoredAny;

struct HostilePanic;

impl Agent for HostilePanic {
    type Input = IgnoredAny;
    type Output = ();

    fn run(_ctx: &Context, _input: IgnoredAny) -> Result<(), AgentError> {
        panic!("hostile-panic: deliberate panic");
    }
}

delta_sdk::export_agent!(HostilePanic);
