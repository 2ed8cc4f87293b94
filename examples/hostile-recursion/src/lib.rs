//! `hostile-recursion`: overflows the WebAssembly call stack.
//!
//! * Input: any JSON document (ignored).
//! * Recurses without bound through a non-tail call (the result of each call
//!   is used after it returns, so the recursion cannot become a loop). The
//!   frames are small and keep their values in wasm locals, not on the
//!   linear-memory shadow stack, so what overflows is the engine's wasm stack
//!   (`max_wasm_stack`): the run traps with a stack-overflow trap. It never
//!   returns.

use core::hint::black_box;

use delta_sdk::prelude::*;
use delta_sdk::serde::de::IgnoredAny;

/// Recurses until the wasm stack is exhausted. `limit` is opaque to the
/// optimizer (it comes through `black_box` once, outside the recursion) and
/// is `u64::MAX` in practice, so the base case is never reached.
#[inline(never)]
fn deep(n: u64, limit: u64) -> u64 {
    if n >= limit {
        return n;
    }
    // Non-tail: the callee's result is combined with `n` after it returns.
    deep(n + 1, limit).wrapping_mul(31) ^ n
}

struct HostileRecursion;

impl Agent for HostileRecursion {
    type Input = IgnoredAny;
    type Output = u64;

    fn run(_ctx: &Context, _input: IgnoredAny) -> Result<u64, AgentError> {
        Ok(deep(0, black_box(u64::MAX)))
    }
}

delta_sdk::export_agent!(HostileRecursion);
