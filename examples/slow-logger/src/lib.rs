//! `slow-logger`: logs lines over time, for tests of live log streaming and
//! of a node's graceful drain.
//!
//! * Input: `{"lines": <u32>, "interval_ms": <u64>}`.
//! * Logs `line <i>` at info level, then sleeps `interval_ms` (a WASI clock
//!   wait, so the guest is blocked in the host, not spinning), `lines` times.
//! * Output: `{"lines": <lines>}`.

use std::time::Duration;

use delta_sdk::prelude::*;

/// The task input.
#[derive(Deserialize)]
struct Input {
    lines: u32,
    interval_ms: u64,
}

/// The output.
#[derive(Serialize)]
struct Done {
    lines: u32,
}

struct SlowLogger;

impl Agent for SlowLogger {
    type Input = Input;
    type Output = Done;

    fn run(_ctx: &Context, input: Input) -> Result<Done, AgentError> {
        for i in 0..input.lines {
            info!("line {i}");
            std::thread::sleep(Duration::from_millis(input.interval_ms));
        }
        Ok(Done { lines: input.lines })
    }
}

delta_sdk::export_agent!(SlowLogger);
