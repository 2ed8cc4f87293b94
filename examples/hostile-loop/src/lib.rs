//! `hostile-loop`: spins forever.
//!
//! * Input: any JSON document (ignored; invalid JSON gets the SDK's
//!   `invalid-input` error instead).
//! * Never returns and never calls the host: it increments a counter in an
//!   endless loop that the optimizer cannot remove (`black_box`). Only fuel
//!   or epoch interruption (the deadline) can stop it.

use core::hint::black_box;

use delta_sdk::prelude::*;
use delta_sdk::serde::de::IgnoredAny;

struct HostileLoop;

impl Agent for HostileLoop {
    type Input = IgnoredAny;
    type Output = ();

    fn run(_ctx: &Context, _input: IgnoredAny) -> Result<(), AgentError> {
        let mut counter: u64 = 0;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

delta_sdk::export_agent!(HostileLoop);
