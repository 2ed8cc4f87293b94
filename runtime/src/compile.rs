//! Compilation, bounded in time and memory.
//!
//! Cranelift's cost grows with the input: a megabyte of adversarial code can
//! take tens of seconds and most of a gigabyte. In subprocess mode the
//! compile runs in a worker process that limits its own address space and CPU
//! time with `setrlimit` before reading the component, and the parent kills it
//! at the wall-clock timeout. The worker writes the compiled artifact to a
//! file the parent then maps; nothing else crosses the boundary.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{CompileSettings, EngineSettings};
use crate::engine::{Allocation, build_engine};
use crate::error::LoadError;

/// Exit code of the worker when the component itself is invalid.
const EXIT_INVALID: u8 = 3;
/// Exit code of the worker for any other failure.
const EXIT_FAILED: u8 = 4;
/// Bytes of worker stderr kept for error messages.
const STDERR_LIMIT: u64 = 16 * 1024;

/// Compile `bytes` with the engine for `settings` in a worker subprocess and
/// write the artifact to `output`.
pub(crate) async fn compile_in_subprocess(
    program: &Path,
    args: &[String],
    settings: &EngineSettings,
    compile: &CompileSettings,
    bytes: &[u8],
    output: &Path,
) -> Result<(), LoadError> {
    let settings_json =
        serde_json::to_string(settings).map_err(|e| LoadError::Worker(e.to_string()))?;
    let cpu_seconds = compile.cpu_ms.div_ceil(1000).max(1);
    // Cranelift compiles functions in parallel on rayon's pool, by default
    // one thread per core: two stalling uploads would then take every core
    // and another tenant's compile, though it has its own place, would run
    // at a fraction of its speed. Each place gets its share of the cores
    // instead (benches/compile_storm.rs).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = (cores / compile.max_concurrent.max(1)).max(1);
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .arg("--settings")
        .arg(settings_json)
        .arg("--output")
        .arg(output)
        .arg("--max-memory")
        .arg(compile.max_memory_bytes.to_string())
        .arg("--max-cpu-seconds")
        .arg(cpu_seconds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_clear()
        .env("RAYON_NUM_THREADS", threads.to_string())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LoadError::Worker(format!("starting {}: {e}", program.display())))?;

    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| LoadError::Worker("no stdin".into()))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| LoadError::Worker("no stderr".into()))?;
    let input = bytes.to_vec();
    let feed = tokio::spawn(async move {
        // A worker that dies early closes the pipe; its exit status explains why.
        let _ = stdin.write_all(&input).await;
    });
    let drain = tokio::spawn(async move {
        let mut kept = Vec::new();
        let _ = (&mut stderr)
            .take(STDERR_LIMIT)
            .read_to_end(&mut kept)
            .await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&kept).trim().to_owned()
    });

    let timeout = Duration::from_millis(compile.timeout_ms);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|e| LoadError::Worker(e.to_string()))?,
        Err(_) => {
            let _ = child.kill().await;
            feed.abort();
            return Err(LoadError::CompileTimeout {
                timeout_ms: compile.timeout_ms,
            });
        }
    };
    feed.abort();
    let message = drain.await.unwrap_or_default();
    classify_exit(status, message, compile)
}

fn classify_exit(
    status: std::process::ExitStatus,
    message: String,
    compile: &CompileSettings,
) -> Result<(), LoadError> {
    use std::os::unix::process::ExitStatusExt;
    let out_of_memory = || LoadError::CompileOutOfMemory {
        limit: compile.max_memory_bytes,
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) if code == i32::from(EXIT_INVALID) => Err(LoadError::Invalid(message)),
        (_, Some(sig)) if sig == nix::sys::signal::Signal::SIGXCPU as i32 => {
            Err(LoadError::CompileCpuExceeded {
                cpu_ms: compile.cpu_ms.div_ceil(1000).max(1) * 1000,
            })
        }
        // Allocation failure under RLIMIT_AS aborts the worker (SIGABRT), or
        // surfaces as a failed mmap/thread spawn reported on stderr.
        (_, Some(sig)) if sig == nix::sys::signal::Signal::SIGABRT as i32 => Err(out_of_memory()),
        _ if is_oom_message(&message) => Err(out_of_memory()),
        (code, signal) => Err(LoadError::Worker(format!(
            "worker exited with code {code:?}, signal {signal:?}: {message}"
        ))),
    }
}

fn is_oom_message(message: &str) -> bool {
    [
        "memory allocation",
        "Cannot allocate memory",
        "out of memory",
        "failed to spawn thread",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// The worker side: `<program> [args] --settings JSON --output PATH
/// --max-memory BYTES --max-cpu-seconds N`, component bytes on stdin.
///
/// Call it from a binary's `main` (the `delta` CLI's hidden `compile-worker`
/// command, or `delta-compile-worker`) with the arguments after the command.
pub fn worker_main(args: impl IntoIterator<Item = String>) -> ExitCode {
    match worker(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::from(code)
        }
    }
}

fn worker(args: impl IntoIterator<Item = String>) -> Result<(), (u8, String)> {
    let failed = |m: String| (EXIT_FAILED, m);
    let mut settings = None;
    let mut output = None;
    let mut max_memory = None;
    let mut max_cpu = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| failed(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--settings" => {
                settings = Some(
                    serde_json::from_str::<EngineSettings>(&value)
                        .map_err(|e| failed(format!("--settings: {e}")))?,
                )
            }
            "--output" => output = Some(PathBuf::from(value)),
            "--max-memory" => {
                max_memory = Some(value.parse::<u64>().map_err(|e| failed(e.to_string()))?)
            }
            "--max-cpu-seconds" => {
                max_cpu = Some(value.parse::<u64>().map_err(|e| failed(e.to_string()))?)
            }
            other => return Err(failed(format!("unknown argument {other}"))),
        }
    }
    let (Some(settings), Some(output), Some(max_memory), Some(max_cpu)) =
        (settings, output, max_memory, max_cpu)
    else {
        return Err(failed(
            "usage: --settings JSON --output PATH --max-memory BYTES --max-cpu-seconds N".into(),
        ));
    };

    // Limits first, before touching the untrusted input.
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_AS, max_memory, max_memory)
        .map_err(|e| failed(format!("setrlimit(RLIMIT_AS): {e}")))?;
    setrlimit(Resource::RLIMIT_CPU, max_cpu, max_cpu + 1)
        .map_err(|e| failed(format!("setrlimit(RLIMIT_CPU): {e}")))?;

    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| failed(format!("reading stdin: {e}")))?;
    let engine = build_engine(&settings, Allocation::OnDemand)
        .map_err(|e| failed(format!("building engine: {e:#}")))?;
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| (EXIT_INVALID, format!("{e:#}")))?;
    std::fs::write(&output, compiled)
        .map_err(|e| failed(format!("writing {}: {e}", output.display())))?;
    Ok(())
}
