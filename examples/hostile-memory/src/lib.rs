//! `hostile-memory`: allocates memory until it is stopped.
//!
//! * Input: any JSON document (ignored).
//! * Allocates 1 MiB `Vec<u8>` chunks in an endless loop, filling every byte
//!   (so every page is really written, not just reserved) and keeping every
//!   chunk alive. It never returns normally: when the host refuses to grow
//!   linear memory the allocator fails and the guest aborts (a trap, after
//!   the standard library prints `memory allocation of 1048576 bytes failed`
//!   to stderr).

use core::hint::black_box;

use delta_sdk::prelude::*;
use delta_sdk::serde::de::IgnoredAny;

/// Size of one chunk.
const CHUNK: usize = 1 << 20;

struct HostileMemory;

impl Agent for HostileMemory {
    type Input = IgnoredAny;
    type Output = ();

    fn run(_ctx: &Context, _input: IgnoredAny) -> Result<(), AgentError> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut fill: u8 = 1;
        loop {
            // A non-zero fill value, so the allocation is a real write of
            // every byte and cannot be satisfied by untouched zero pages.
            let chunk = vec![fill; CHUNK];
            chunks.push(black_box(chunk));
            black_box(&mut chunks);
            fill = fill.wrapping_add(1).max(1);
        }
    }
}

delta_sdk::export_agent!(HostileMemory);
