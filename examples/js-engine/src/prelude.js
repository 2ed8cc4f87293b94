// The `delta` module: what a script imports with `import { log } from "delta"`.
//
// Evaluated once at deploy time, before the author's module. The native
// functions arrive on a global that this module deletes, so the author's code
// only reaches them through the wrappers below. Every payload crossing into
// Rust is a JSON string; refusals come back as `{error: {...}}` and are thrown
// as `DeltaError`s carrying the same codes as the Rust SDK's `AgentError`s.
const native = globalThis.__delta_native;
delete globalThis.__delta_native;

/** A refusal or failure of a capability (or one the script raises itself). */
export class DeltaError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = "DeltaError";
    this.code = String(code);
    this.retryable = false;
    if (details) Object.assign(this, details);
  }
}

function call(fn, ...args) {
  const answer = JSON.parse(fn(...args));
  if (answer.error) {
    const { code, message, ...details } = answer.error;
    throw new DeltaError(code, message, details);
  }
  return answer.ok;
}

function text(args) {
  return args
    .map((a) => {
      if (typeof a === "string") return a;
      if (a instanceof Error) return `${a.name}: ${a.message}`;
      try {
        const json = JSON.stringify(a);
        return json === undefined ? String(a) : json;
      } catch {
        return String(a);
      }
    })
    .join(" ");
}

const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

/** Structured log lines for the run's log (bounded by the host). */
export const log = Object.freeze({
  trace: (...a) => native.log(0, text(a)),
  debug: (...a) => native.log(1, text(a)),
  info: (...a) => native.log(2, text(a)),
  warn: (...a) => native.log(3, text(a)),
  error: (...a) => native.log(4, text(a)),
  write(level, ...a) {
    const n = LEVELS[level];
    if (n === undefined) throw new TypeError(`unknown log level ${String(level)}`);
    native.log(n, text(a));
  },
});

function unavailable(what) {
  return () => {
    throw new DeltaError(
      "capability-not-available",
      `${what} is not available to a verifier (verifiers may only log)`,
    );
  };
}

/** Chat completions through the host's LLM gateway. */
export const llm = Object.freeze({
  complete: native.llm
    ? (request) => call(native.llm, JSON.stringify(request ?? {}))
    : unavailable("llm.complete"),
});

/** Templated email and SMS under the operator's message rules. */
export const messaging = Object.freeze({
  send: native.send
    ? (request) => call(native.send, JSON.stringify(request ?? {}))
    : unavailable("messaging.send"),
});

/** The agent's token budget. */
export const budget = Object.freeze({
  remaining: native.budget
    ? () => call(native.budget, JSON.stringify({ op: "remaining" }))
    : unavailable("budget.remaining"),
  request: native.budget
    ? (amount, reason) =>
        call(native.budget, JSON.stringify({ op: "request", amount, reason: String(reason ?? "") }))
    : unavailable("budget.request"),
  poll: native.budget
    ? (id) => call(native.budget, JSON.stringify({ op: "poll", id: String(id) }))
    : unavailable("budget.poll"),
});

const console = Object.freeze({
  log: log.info,
  info: log.info,
  debug: log.debug,
  trace: log.trace,
  warn: log.warn,
  error: log.error,
});
Object.defineProperty(globalThis, "console", { value: console, writable: true, configurable: true });

// A snapshot would otherwise give every run the same Math.random sequence.
Math.random = native.random;

// How the engine turns what `run`/`verify` produced into the host's terms.
// Kept off the global object; handed back to Rust as this module's default.
function settle(ok, value) {
  try {
    if (ok) {
      const json = JSON.stringify(value);
      return JSON.stringify({ ok: json === undefined ? "null" : json });
    }
    if (value !== null && typeof value === "object" && typeof value.code === "string" && value.code) {
      return JSON.stringify({
        error: { code: value.code, message: String(value.message ?? ""), retryable: value.retryable === true },
      });
    }
    if (value instanceof Error) {
      const stack = typeof value.stack === "string" && value.stack ? `\n${value.stack}` : "";
      return JSON.stringify({ crash: `uncaught ${value.name}: ${value.message}${stack}` });
    }
    let shown;
    try {
      shown = typeof value === "string" ? JSON.stringify(value) : String(value);
    } catch {
      shown = `a ${typeof value}`;
    }
    return JSON.stringify({ crash: `uncaught exception (not an Error): ${shown}` });
  } catch (e) {
    let why;
    try {
      why = String(e);
    } catch {
      why = "unprintable";
    }
    return JSON.stringify({ crash: `the result could not be turned into JSON: ${why}` });
  }
}

export default settle;
