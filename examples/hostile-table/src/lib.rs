//! `hostile-table`: a guest whose wasm function table has more than 20,000
//! entries.
//!
//! `build.rs` generates 20,000 distinct `#[inline(never)] fn fN() -> u64 {
//! N * 2654435761 }` and a `static TABLE: [fn() -> u64; 20000]` of pointers
//! to them. Taking their addresses puts every one of them in the module's
//! indirect function table (`__indirect_function_table`), whose minimum size
//! is therefore above 20,000. A host that caps tables at fewer elements (the
//! Delta default is 10,000) refuses to instantiate it; with a larger cap it
//! runs:
//!
//! * Input: `{"index": n}` (`n` a `u64`, default 0).
//! * Output: `{"value": n * 2654435761}` (computed by an indirect call
//!   through `TABLE[n]`, behind `black_box` so nothing is optimized away).
//! * `n >= 20000` is answered with an `invalid-input` agent error.

use core::hint::black_box;

use delta_sdk::prelude::*;

mod table {
    include!(concat!(env!("OUT_DIR"), "/table.rs"));
}

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    index: u64,
}

#[derive(Serialize)]
struct Output {
    value: u64,
}

struct HostileTable;

impl Agent for HostileTable {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, AgentError> {
        let table: &[fn() -> u64] = black_box(&table::TABLE[..]);
        let function = usize::try_from(input.index)
            .ok()
            .and_then(|i| table.get(i))
            .ok_or_else(|| {
                AgentError::invalid_input(format!("index must be below {}", table::FUNCTIONS))
            })?;
        Ok(Output {
            value: black_box(*function)(),
        })
    }
}

delta_sdk::export_agent!(HostileTable);
