//! One invocation: a fresh store with limits, instantiation from the shared
//! `InstancePre`, the call, and classification of how it ended.
//!
//! A store is never reused: whatever the guest did (trap, interrupted host
//! call, exhausted memory), the next invocation gets a fresh instance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use delta_host_api::bindings::delta::agent::types::{AgentError, Output, Task, Verdict};
use delta_host_api::{CallContext, Capabilities, HostState, Interrupted};
use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::Runtime;
use crate::component::{LoadedComponent, Pre};
use crate::config::InvocationLimits;
use crate::error::RunError;
use crate::outcome::{Outcome, RunReport, Usage};
use crate::run_state::{Limiter, RunState, Stop, sandbox_wasi};
use crate::stdio::BoundedPipe;

/// Fuel handed out per slice (see `fuel_async_yield_interval` in `invoke`):
/// about a millisecond of guest code.
const FUEL_SLICE: u64 = 1_000_000;

/// What to call.
pub(crate) enum Call {
    Agent(Task),
    Verifier { spec: String, submission: String },
}

enum Returned {
    Agent(Result<Output, AgentError>),
    Verdict(Verdict),
}

impl Runtime {
    pub(crate) async fn invoke(
        &self,
        component: &LoadedComponent,
        call: Call,
        ctx: CallContext,
        limits: InvocationLimits,
        caps: Capabilities,
        cancel: CancellationToken,
    ) -> Result<RunReport, RunError> {
        let limits = self.clamp(limits);
        let started = Instant::now();
        let deadline = started + limits.timeout();
        let stdout = BoundedPipe::new(limits.max_stdio_bytes as usize);
        let stderr = BoundedPipe::new(limits.max_stdio_bytes as usize);
        let host = HostState::new(
            ctx,
            caps,
            limits.log,
            tokio::time::Instant::from_std(deadline),
            cancel.clone(),
        );
        let state = RunState {
            wasi: sandbox_wasi(&stdout, &stderr),
            table: ResourceTable::new(),
            host,
            limiter: Limiter {
                memory_cap: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                memory_now: 0,
                memory_peak: 0,
                memory_refused: false,
                table_cap: self.config.engine.pooling.table_elements,
            },
            deadline,
            cancel: cancel.clone(),
            stop: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.config.engine.consume_fuel {
            store
                .set_fuel(limits.fuel)
                .map_err(|e| RunError::Setup(format!("{e:#}")))?;
            // Wasmtime keeps the fuel count in a register between calls and
            // loses what was burnt since the last flush when the guest traps
            // (wasmtime#13802): a guest stopped at its deadline inside a
            // tight loop would look nearly free. Handing fuel out in slices
            // flushes the count at every slice, so at most one slice goes
            // unbilled; the yield at each slice costs about a microsecond.
            store
                .fuel_async_yield_interval(Some(FUEL_SLICE))
                .map_err(|e| RunError::Setup(format!("{e:#}")))?;
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.cancel.is_cancelled() {
                state.stop = Some(Stop::Cancelled);
                return Ok(UpdateDeadline::Interrupt);
            }
            if Instant::now() >= state.deadline {
                state.stop = Some(Stop::Deadline);
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yielding at every tick keeps a busy guest from holding a tokio
            // worker thread.
            Ok(UpdateDeadline::Yield(1))
        });

        // Host calls watch the deadline themselves and the epoch stops wasm,
        // but a guest blocked in a WASI wait (e.g. a long sleep) is neither:
        // this backstop drops the call a little after the deadline.
        let backstop = tokio::time::Instant::from_std(
            deadline
                + 2 * Duration::from_millis(self.config.engine.epoch_tick_ms)
                + Duration::from_millis(20),
        );
        let result = {
            let call = call_guest(&mut store, &component.pre, call, &self.live);
            tokio::pin!(call);
            tokio::select! {
                result = &mut call => Some(result),
                // `None`: the call was dropped; the cancellation token tells why.
                _ = tokio::time::sleep_until(backstop) => None,
                _ = cancel.cancelled() => None,
            }
        };

        let fuel_used = if self.config.engine.consume_fuel {
            limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        let wall_time = started.elapsed();
        let state = store.into_data();
        let (stdout, stdout_dropped) = stdout.take();
        let (stderr, stderr_dropped) = stderr.take();
        let mut host = state.host;
        let log = host.take_log();
        let usage = Usage {
            fuel_used,
            wall_time_us: wall_time.as_micros() as u64,
            peak_memory_bytes: state.limiter.memory_peak as u64,
            log: log.stats(),
            stdout_dropped_bytes: stdout_dropped,
            stderr_dropped_bytes: stderr_dropped,
        };
        let outcome = match result {
            None => {
                // Dropped by the backstop or a cancellation while blocked.
                if cancel.is_cancelled() {
                    Outcome::Cancelled
                } else {
                    Outcome::Deadline
                }
            }
            Some(Ok(returned)) => completed(returned, &limits),
            Some(Err(error)) => {
                if error
                    .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some()
                {
                    return Err(RunError::Busy);
                }
                classify(
                    error,
                    state.stop,
                    state.limiter.memory_refused,
                    &stderr,
                    log.lines(),
                )
            }
        };
        Ok(RunReport {
            outcome,
            usage,
            logs: log.into_lines(),
            stdout,
            stderr,
        })
    }

    fn clamp(&self, mut limits: InvocationLimits) -> InvocationLimits {
        limits.memory_bytes = limits
            .memory_bytes
            .min(self.config.engine.pooling.max_memory_bytes);
        limits
    }
}

/// Counts one live instance for as long as it is held.
struct LiveGuard<'a>(&'a AtomicUsize);

impl<'a> LiveGuard<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn call_guest(
    store: &mut Store<RunState>,
    pre: &Pre,
    call: Call,
    live: &AtomicUsize,
) -> wasmtime::Result<Returned> {
    match (pre, call) {
        (Pre::Agent(pre), Call::Agent(task)) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let _live = LiveGuard::new(live);
            let result = instance.call_run(&mut *store, &task).await?;
            Ok(Returned::Agent(result))
        }
        (Pre::Verifier(pre), Call::Verifier { spec, submission }) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let _live = LiveGuard::new(live);
            let verdict = instance
                .call_verify(&mut *store, &spec, &submission)
                .await?;
            Ok(Returned::Verdict(verdict))
        }
        // Checked by the public entry points before a store is made.
        _ => Err(wasmtime::format_err!(
            "component called through the wrong world"
        )),
    }
}

fn completed(returned: Returned, limits: &InvocationLimits) -> Outcome {
    let body = match returned {
        Returned::Agent(Err(e)) => {
            return Outcome::AgentError {
                code: e.code,
                message: e.message,
                retryable: e.retryable,
            };
        }
        Returned::Agent(Ok(output)) => output.body,
        Returned::Verdict(verdict) => match serde_json::to_string(&verdict) {
            Ok(json) => json,
            Err(e) => {
                return Outcome::InvalidOutput {
                    message: e.to_string(),
                };
            }
        },
    };
    let size = body.len() as u64;
    if size > limits.max_output_bytes {
        return Outcome::OutputTooLarge {
            size,
            limit: limits.max_output_bytes,
        };
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&body) {
        return Outcome::InvalidOutput {
            message: e.to_string(),
        };
    }
    Outcome::Completed { output: body }
}

fn classify(
    error: wasmtime::Error,
    stop: Option<Stop>,
    memory_refused: bool,
    stderr: &str,
    logs: &[delta_host_api::log::LogLine],
) -> Outcome {
    match stop {
        Some(Stop::Deadline) => return Outcome::Deadline,
        Some(Stop::Cancelled) => return Outcome::Cancelled,
        None => {}
    }
    if let Some(interrupted) = error.downcast_ref::<Interrupted>() {
        return match interrupted {
            Interrupted::Deadline => Outcome::Deadline,
            Interrupted::Cancelled => Outcome::Cancelled,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Outcome::OutOfFuel,
        Some(Trap::StackOverflow) => Outcome::StackOverflow,
        Some(Trap::Interrupt) => Outcome::Deadline,
        _ if memory_refused => Outcome::MemoryLimit,
        Some(Trap::UnreachableCodeReached) => Outcome::GuestPanic {
            message: panic_message(stderr, logs),
        },
        _ => Outcome::Trap {
            message: format!("{error:#}"),
        },
    }
}

/// The guest's own account of its panic: the end of its stderr (where Rust's
/// panic handler writes), else its last error-level log line.
fn panic_message(stderr: &str, logs: &[delta_host_api::log::LogLine]) -> String {
    const KEEP: usize = 2048;
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        let mut start = stderr.len().saturating_sub(KEEP);
        while !stderr.is_char_boundary(start) {
            start += 1;
        }
        return stderr[start..].to_owned();
    }
    logs.iter()
        .rev()
        .find(|l| l.level == delta_host_api::log::LogLevel::Error)
        .map(|l| l.message.clone())
        .unwrap_or_else(|| "the guest aborted without a message".to_owned())
}
