//! The QuickJS engine behind Delta's JavaScript agents and verifiers.
//!
//! A library shared by the `js-agent` and `js-verifier` components. Its life
//! has two phases:
//!
//! 1. **Deploy time**, inside Wizer: [`initialize`] builds the QuickJS
//!    runtime, evaluates the `delta` module (`prelude.js`), compiles and
//!    evaluates the author's ES module and keeps its entry function. Wizer
//!    then snapshots linear memory, so the engine, the compiled bytecode and
//!    the module's top-level state are data segments of the new component.
//! 2. **Run time**: [`call`] calls the entry function with JSON arguments,
//!    drives promises to completion and turns the result into an
//!    [`Answer`]. Nothing is compiled or set up per run.
//!
//! Capabilities are plain native functions taking and returning JSON strings
//! (installed by the component crate, so a verifier links only `log`).

use std::cell::RefCell;

use rquickjs::allocator::{Allocator, RustAllocator};
use rquickjs::promise::PromiseState;
use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Persistent, Promise,
    Runtime, Value,
};

/// Source of the `delta` module.
const PRELUDE: &str = include_str!("prelude.js");

/// The module name the author's script is compiled under (shown in stack
/// traces and syntax errors as `agent.js:LINE:COL`).
pub const SCRIPT_NAME: &str = "agent.js";

/// Pages QuickJS may use for its own C stack frames are not limited under
/// WASI (its stack check is compiled out), so deep recursion ends with the
/// Wasm stack-overflow trap the host already classifies.
struct Program {
    // Field order is drop order: persistent values before their runtime.
    entry: Persistent<Function<'static>>,
    settle: Persistent<Function<'static>>,
    context: Context,
    /// Kept so the runtime outlives everything above (never read).
    _runtime: Runtime,
}

thread_local! {
    static LOADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    // A component instance is single-threaded; the program lives for the
    // instance (and, snapshotted, in every instance made from it).
    static PROGRAM: RefCell<Option<Program>> = const { RefCell::new(None) };
}

/// Installs the native functions of the `delta` module on the object given
/// (`log` is required; `llm`, `send` and `budget` are optional).
pub type Installer = for<'js> fn(&Ctx<'js>, &Object<'js>) -> rquickjs::Result<()>;

/// What a call produced, in the host's terms.
#[derive(Debug)]
pub enum Answer {
    /// The entry function returned (or resolved to) this JSON document.
    Ok(String),
    /// It threw (or rejected with) an object carrying a string `code`.
    Error {
        /// The object's `code`.
        code: String,
        /// Its `message`.
        message: String,
        /// Its `retryable` (false unless `true`).
        retryable: bool,
    },
}

/// Compile and evaluate `source` as an ES module and keep its export `entry`.
/// The error is a JSON object `{kind, message, line?, column?}` for the host.
pub fn initialize(source: &str, entry: &str, install: Installer) -> Result<(), String> {
    LOADING.with(|l| l.set(true));
    let result = load(source, entry, install);
    LOADING.with(|l| l.set(false));
    result
}

/// Whether the script's top level is being evaluated (deploy time, inside
/// Wizer): capabilities are refused and log lines dropped then, since no run
/// exists to log to or pay for them.
pub fn loading() -> bool {
    LOADING.with(|l| l.get())
}

fn load(source: &str, entry: &str, install: Installer) -> Result<(), String> {
    let runtime = Runtime::new_with_alloc(AbortOnOom(RustAllocator))
        .map_err(|e| refusal("engine", &e.to_string()))?;
    let context = Context::full(&runtime).map_err(|e| refusal("engine", &e.to_string()))?;
    let (entry, settle) = context.with(|ctx| -> Result<_, String> {
        let native = Object::new(ctx.clone()).map_err(|e| refusal("engine", &e.to_string()))?;
        install(&ctx, &native).map_err(|e| refusal("engine", &e.to_string()))?;
        let random =
            Function::new(ctx.clone(), random).map_err(|e| refusal("engine", &e.to_string()))?;
        native
            .set("random", random)
            .map_err(|e| refusal("engine", &e.to_string()))?;
        ctx.globals()
            .set("__delta_native", native)
            .map_err(|e| refusal("engine", &e.to_string()))?;

        let prelude = Module::declare(ctx.clone(), "delta", PRELUDE)
            .catch(&ctx)
            .map_err(|e| refusal("engine", &describe(&e)))?;
        let (prelude, done) = prelude
            .eval()
            .catch(&ctx)
            .map_err(|e| refusal("engine", &describe(&e)))?;
        finish_loading(&ctx, done).map_err(|m| refusal("engine", &m))?;
        let settle: Function = prelude
            .get("default")
            .map_err(|e| refusal("engine", &e.to_string()))?;

        let module = match Module::declare(ctx.clone(), SCRIPT_NAME, source).catch(&ctx) {
            Ok(module) => module,
            Err(e) => return Err(syntax(&e)),
        };
        let (module, done) = match module.eval().catch(&ctx) {
            Ok(evaluated) => evaluated,
            Err(e) => return Err(syntax(&e)),
        };
        finish_loading(&ctx, done).map_err(|m| refusal("load", &m))?;
        let exported: Value = module
            .get(entry)
            .map_err(|e| refusal("load", &e.to_string()))?;
        let Some(function) = exported.as_function().cloned() else {
            return Err(refusal(
                "no-entry",
                &format!(
                    "the script does not export a function `{entry}` \
                     (write `export function {entry}(...) {{ ... }}`)"
                ),
            ));
        };
        Ok((
            Persistent::save(&ctx, function),
            Persistent::save(&ctx, settle),
        ))
    })?;
    PROGRAM.with(|program| {
        *program.borrow_mut() = Some(Program {
            entry,
            settle,
            context,
            _runtime: runtime,
        });
    });
    Ok(())
}

/// Call the entry function with `args` (each a JSON document, parsed into a
/// JS value first). A crash (uncaught exception without a `code`, a result
/// that is not JSON, a promise that can never settle, no program) is written
/// to stderr and aborts the instance: the host reports it as a guest crash,
/// or as `memory-limit` when QuickJS ran out of memory under the cap.
pub fn call(args: &[&str]) -> Answer {
    let outcome = PROGRAM.with(|program| {
        let program = program.borrow();
        let Some(program) = program.as_ref() else {
            return Err("the JavaScript engine was not initialised with a script".to_owned());
        };
        program.context.with(|ctx| invoke(&ctx, program, args))
    });
    match outcome {
        Ok(answer) => answer,
        Err(message) => fail(&message),
    }
}

fn invoke<'js>(ctx: &Ctx<'js>, program: &Program, args: &[&str]) -> Result<Answer, String> {
    let entry = program
        .entry
        .clone()
        .restore(ctx)
        .map_err(|e| e.to_string())?;
    let settle = program
        .settle
        .clone()
        .restore(ctx)
        .map_err(|e| e.to_string())?;
    let mut values = rquickjs::function::Args::new(ctx.clone(), args.len());
    for arg in args {
        let value = ctx
            .json_parse(*arg)
            .map_err(|e| format!("argument is not JSON: {e}"))?;
        values.push_arg(value).map_err(|e| e.to_string())?;
    }
    let (ok, value) = match entry.call_arg::<Value>(values).catch(ctx) {
        Ok(value) => match value.as_promise().cloned() {
            Some(promise) => settle_promise(ctx, promise)?,
            None => (true, value),
        },
        Err(e) => (false, thrown(ctx, e)?),
    };
    let answer: String = settle
        .call((ok, value))
        .catch(ctx)
        .map_err(|e| describe(&e))?;
    let answer: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| format!("engine answer: {e}"))?;
    if let Some(json) = answer.get("ok").and_then(|v| v.as_str()) {
        return Ok(Answer::Ok(json.to_owned()));
    }
    if let Some(error) = answer.get("error") {
        let text = |key: &str| {
            error
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        return Ok(Answer::Error {
            code: text("code"),
            message: text("message"),
            retryable: error.get("retryable").and_then(|v| v.as_bool()) == Some(true),
        });
    }
    Err(answer
        .get("crash")
        .and_then(|v| v.as_str())
        .unwrap_or("the script failed")
        .to_owned())
}

/// Run queued jobs until `promise` settles. An empty queue with the promise
/// still pending means nothing can ever settle it (there are no timers or
/// I/O events in this engine).
fn settle_promise<'js>(
    ctx: &Ctx<'js>,
    promise: Promise<'js>,
) -> Result<(bool, Value<'js>), String> {
    loop {
        match promise.state() {
            PromiseState::Resolved => {
                let value = promise.result::<Value>().transpose().catch(ctx);
                return match value {
                    Ok(Some(value)) => Ok((true, value)),
                    Ok(None) => Ok((true, Value::new_undefined(ctx.clone()))),
                    Err(e) => Ok((false, thrown(ctx, e)?)),
                };
            }
            PromiseState::Rejected => {
                let value = promise.result::<Value>().transpose().catch(ctx);
                return match value {
                    Ok(value) => Ok((
                        false,
                        value.unwrap_or_else(|| Value::new_undefined(ctx.clone())),
                    )),
                    Err(e) => Ok((false, thrown(ctx, e)?)),
                };
            }
            PromiseState::Pending => {}
        }
        // Through the context: the runtime is already borrowed by `with`.
        // A job that threw has its rejection delivered to its promise.
        if !ctx.execute_pending_job() {
            return Err("the promise returned by the script can never settle: \
                        it is pending and no job is left to run"
                .to_owned());
        }
    }
}

/// Evaluate module loading to completion (top-level `await` included).
fn finish_loading<'js>(ctx: &Ctx<'js>, done: Promise<'js>) -> Result<(), String> {
    match settle_promise(ctx, done)? {
        (true, _) => Ok(()),
        (false, value) => Err(describe_value(&value)),
    }
}

fn thrown<'js>(ctx: &Ctx<'js>, error: CaughtError<'js>) -> Result<Value<'js>, String> {
    let _ = ctx;
    match error {
        CaughtError::Exception(e) => Ok(e.into_value()),
        CaughtError::Value(v) => Ok(v),
        CaughtError::Error(e) => Err(e.to_string()),
    }
}

fn describe(error: &CaughtError<'_>) -> String {
    match error {
        CaughtError::Exception(e) => {
            let name: String = e.get("name").unwrap_or_else(|_| "Error".to_owned());
            format!("{name}: {}", e.message().unwrap_or_default())
        }
        CaughtError::Value(v) => describe_value(v),
        CaughtError::Error(e) => e.to_string(),
    }
}

fn describe_value(value: &Value<'_>) -> String {
    if let Some(object) = value.as_object() {
        let name: Option<String> = object.get("name").ok();
        let message: Option<String> = object.get("message").ok();
        if let Some(message) = message {
            return format!("{}: {message}", name.unwrap_or_else(|| "Error".to_owned()));
        }
    }
    if let Some(s) = value.as_string().and_then(|s| s.to_string().ok()) {
        return format!("uncaught exception (not an Error): {s:?}");
    }
    format!("uncaught exception (not an Error): {}", value.type_name())
}

/// A syntax (or link) error of the author's module, with its position when
/// QuickJS gives one (`agent.js:LINE:COL` in the stack).
fn syntax(error: &CaughtError<'_>) -> String {
    let message = describe(error);
    let position = match error {
        CaughtError::Exception(e) => e.stack().and_then(|stack| position(&stack)),
        _ => None,
    };
    let is_syntax = message.starts_with("SyntaxError");
    let mut json = serde_json::json!({
        "kind": if is_syntax { "syntax" } else { "load" },
        "message": message,
    });
    if let Some((line, column)) = position {
        json["line"] = line.into();
        json["column"] = column.into();
    }
    json.to_string()
}

fn position(stack: &str) -> Option<(u64, u64)> {
    let at = stack.find(&format!("{SCRIPT_NAME}:"))? + SCRIPT_NAME.len() + 1;
    let mut parts = stack[at..].splitn(3, |c: char| !c.is_ascii_digit());
    let line = parts.next()?.parse().ok()?;
    let column = parts.next()?.parse().ok()?;
    Some((line, column))
}

fn refusal(kind: &str, message: &str) -> String {
    serde_json::json!({ "kind": kind, "message": message }).to_string()
}

fn random() -> f64 {
    let mut bytes = [0u8; 8];
    // WASI's random source does not fail; a zero fallback only weakens a
    // non-cryptographic Math.random.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// QuickJS's allocations, through Rust's allocator, ending the instance when
/// memory runs out. QuickJS would otherwise throw a catchable `out of
/// memory` error and a script could keep running at the cap; aborting after
/// the host's memory cap refused a grow makes the run `memory-limit`, as for
/// any guest.
struct AbortOnOom(RustAllocator);

fn out_of_memory() -> ! {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(b"out of memory: the run's memory cap refused more heap\n");
    std::process::abort()
}

// SAFETY: every method delegates to `RustAllocator`, which upholds the
// trait's contract; a null result is never returned for a non-zero size
// (the instance aborts instead), which the contract allows.
unsafe impl Allocator for AbortOnOom {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let ptr = self.0.alloc(size);
        if ptr.is_null() && size > 0 {
            out_of_memory();
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let ptr = self.0.calloc(count, size);
        if ptr.is_null() && count.saturating_mul(size) > 0 {
            out_of_memory();
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { self.0.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantee is passed on unchanged.
        let new = unsafe { self.0.realloc(ptr, new_size) };
        if new.is_null() && new_size > 0 {
            out_of_memory();
        }
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}

/// Write `message` to stderr and abort the instance (a guest crash for the
/// host, or `memory-limit` when the cap refused memory before).
pub fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::abort()
}
