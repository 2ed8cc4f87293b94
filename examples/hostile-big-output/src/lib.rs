//! `hostile-big-output`: returns an output far larger than the host allows.
//!
//! * Input: any JSON document (ignored).
//! * Output: `{"blob":"aaa…"}` where the string is 8 MiB (8,388,608 `a`
//!   characters), so the output body is 8,388,620 bytes. The host should
//!   reject it (its default output limit is 1 MiB).

use delta_sdk::prelude::*;
use delta_sdk::serde::de::IgnoredAny;

/// Length of the blob string.
const BLOB_LEN: usize = 8 << 20;

#[derive(Serialize)]
struct Output {
    blob: String,
}

struct HostileBigOutput;

impl Agent for HostileBigOutput {
    type Input = IgnoredAny;
    type Output = Output;

    fn run(_ctx: &Context, _input: IgnoredAny) -> Result<Output, AgentError> {
        Ok(Output {
            blob: "a".repeat(BLOB_LEN),
        })
    }
}

delta_sdk::export_agent!(HostileBigOutput);
