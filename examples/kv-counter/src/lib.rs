//! `kv-counter`: an agent with durable state (`delta:agent/kv`).
//!
//! Input `{}` or `{"op": "count"}`: adds one to the key `runs` with a
//! compare-and-swap loop (so concurrent runs lose no increment) and returns
//! `{"runs": N}`, N being this run's number. A kv error ends the run with
//! the agent error `kv-<code>` (for example `kv-not-allowed` without the
//! grant).
//!
//! Input `{"op": "fill", "keys": K, "bytes": B}`: sets `fill/0` ..
//! `fill/{K-1}` to B bytes each, stopping at the first error; returns
//! `{"stored": n, "error": "<code>" | null}`.
//!
//! Input `{"op": "list", "prefix": P}`: every key starting with P, walked in
//! pages of 2: `{"keys": [...]}`.

use delta_sdk::kv;
use delta_sdk::prelude::*;

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    keys: u32,
    #[serde(default)]
    bytes: usize,
    #[serde(default)]
    prefix: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Count {
        runs: u64,
    },
    Fill {
        stored: u32,
        error: Option<&'static str>,
    },
    List {
        keys: Vec<String>,
    },
}

fn count() -> Result<Output, AgentError> {
    let (_, value) = kv::update("runs", |old| {
        let n: u64 = old
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (n + 1).to_string().into_bytes()
    })?;
    let runs = String::from_utf8_lossy(&value).parse().unwrap_or(0);
    info!("run number {runs}");
    Ok(Output::Count { runs })
}

fn fill(keys: u32, bytes: usize) -> Output {
    let value = vec![b'x'; bytes];
    for i in 0..keys {
        if let Err(e) = kv::set(&format!("fill/{i}"), &value) {
            return Output::Fill {
                stored: i,
                error: Some(e.code()),
            };
        }
    }
    Output::Fill {
        stored: keys,
        error: None,
    }
}

fn list(prefix: &str) -> Result<Output, AgentError> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = kv::list_prefix(prefix, cursor.as_deref(), 2)?;
        keys.extend(page.keys);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(Output::List { keys }),
        }
    }
}

struct KvCounter;

impl Agent for KvCounter {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, AgentError> {
        match input.op.as_deref().unwrap_or("count") {
            "count" => count(),
            "fill" => Ok(fill(input.keys, input.bytes)),
            "list" => list(&input.prefix),
            other => Err(AgentError::invalid_input(format!("unknown op `{other}`"))),
        }
    }
}

delta_sdk::export_agent!(KvCounter);
