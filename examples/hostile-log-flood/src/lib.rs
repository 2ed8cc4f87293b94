//! `hostile-log-flood`: floods every output channel, then returns.
//!
//! * Input: any JSON document (ignored).
//! * Writes 1,000,000 log lines at info level through the SDK
//!   (`flood line <i>`, i = 0..999999).
//! * Writes 16 MiB to stdout and then 16 MiB to stderr, in 64 KiB chunks
//!   (each chunk is 65,535 `o` / `e` bytes and a newline), ignoring every
//!   write error (a closed or full stream does not stop or crash it).
//! * Output: `{"lines_attempted":1000000}`.

use std::io::Write;

use delta_sdk::prelude::*;
use delta_sdk::serde::de::IgnoredAny;

const LOG_LINES: u64 = 1_000_000;
const STREAM_BYTES: usize = 16 << 20;
const CHUNK: usize = 64 << 10;

#[derive(Serialize)]
struct Output {
    lines_attempted: u64,
}

/// Write `STREAM_BYTES` in `CHUNK`-sized writes, ignoring errors.
fn flood(stream: &mut dyn Write, fill: u8) {
    let mut chunk = vec![fill; CHUNK];
    chunk[CHUNK - 1] = b'\n';
    for _ in 0..STREAM_BYTES / CHUNK {
        let _ = stream.write_all(&chunk);
    }
    let _ = stream.flush();
}

struct HostileLogFlood;

impl Agent for HostileLogFlood {
    type Input = IgnoredAny;
    type Output = Output;

    fn run(_ctx: &Context, _input: IgnoredAny) -> Result<Output, AgentError> {
        for i in 0..LOG_LINES {
            info!("flood line {i}");
        }
        flood(&mut std::io::stdout(), b'o');
        flood(&mut std::io::stderr(), b'e');
        Ok(Output {
            lines_attempted: LOG_LINES,
        })
    }
}

delta_sdk::export_agent!(HostileLogFlood);
