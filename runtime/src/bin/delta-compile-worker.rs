//! Stand-alone compile worker (see `delta_runtime::compile`). The `delta`
//! CLI has the same worker as its hidden `compile-worker` command; this
//! binary exists so the runtime's own tests and benchmarks can use
//! subprocess compilation without the CLI.

fn main() -> std::process::ExitCode {
    delta_runtime::compile::worker_main(std::env::args().skip(1))
}
