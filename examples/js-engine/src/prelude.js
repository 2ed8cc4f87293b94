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

// Bytes cross to Rust as {text} (strings, stored as UTF-8) or {bytes}
// (Uint8Array); they come back the same way.
function toData(value, what) {
  if (typeof value === "string") return { text: value };
  if (value instanceof Uint8Array) return { bytes: Array.from(value) };
  throw new TypeError(`${what} must be a string or a Uint8Array`);
}

function fromData(data) {
  return data.text !== undefined ? data.text : Uint8Array.from(data.bytes);
}

const kvCall = (request) => call(native.kv, JSON.stringify(request));

/** The agent's durable key-value state (needs the `kv` grant). */
export const kv = Object.freeze({
  /** `{key, value, version}` (value: a string, or a Uint8Array when not UTF-8), or null. */
  get: native.kv
    ? (key) => {
        const entry = kvCall({ op: "get", key: String(key) });
        return entry === null ? null : { ...entry, value: fromData(entry.value) };
      }
    : unavailable("kv.get"),
  /** Store a string or Uint8Array; the new version. */
  set: native.kv
    ? (key, value) => kvCall({ op: "set", key: String(key), value: toData(value, "value") })
    : unavailable("kv.set"),
  /** Whether the key existed. */
  delete: native.kv ? (key) => kvCall({ op: "delete", key: String(key) }) : unavailable("kv.delete"),
  /** `{keys, nextCursor}`: keys starting with `prefix`, after `cursor`, at most `limit`. */
  list: native.kv
    ? (prefix = "", { cursor = null, limit = 0 } = {}) =>
        kvCall({ op: "list", prefix: String(prefix), cursor, limit })
    : unavailable("kv.list"),
  /** Store only if the current version is `expected` (0: absent); throws `kv-conflict` with `current`. */
  compareAndSwap: native.kv
    ? (key, expected, value) =>
        kvCall({ op: "cas", key: String(key), expected, value: toData(value, "value") })
    : unavailable("kv.compareAndSwap"),
  /** Read, compute `fn(old value or null)`, swap; retried on conflict. `{version, value}`. */
  update: native.kv
    ? (key, fn, attempts = 16) => {
        let last;
        for (let i = 0; i < attempts; i++) {
          const entry = kv.get(key);
          const value = fn(entry === null ? null : entry.value);
          try {
            return { version: kv.compareAndSwap(key, entry === null ? 0 : entry.version, value), value };
          } catch (e) {
            if (!(e instanceof DeltaError) || e.code !== "kv-conflict") throw e;
            last = e;
          }
        }
        throw last;
      }
    : unavailable("kv.update"),
});

/** Outbound HTTP to hosts on the agent's allow-list (needs the `http` grant). */
export const http = Object.freeze({
  /**
   * `request({method, url, headers, body})` or `request(url)`: `{status, headers, body}`
   * (headers as [name, value] pairs; body a string, or a Uint8Array when not UTF-8).
   * A header value may hold `{{secret:NAME}}`, filled in by the host.
   */
  request: native.http
    ? (request) => {
        const r = typeof request === "string" ? { url: request } : { ...(request ?? {}) };
        let headers = r.headers ?? [];
        if (!Array.isArray(headers)) headers = Object.entries(headers);
        const answer = call(
          native.http,
          JSON.stringify({
            method: r.method ?? "GET",
            url: r.url,
            headers: headers.map(([n, v]) => [String(n), String(v)]),
            body: r.body === undefined || r.body === null ? null : toData(r.body, "body"),
          }),
        );
        return { ...answer, body: fromData(answer.body) };
      }
    : unavailable("http.request"),
});

/** Messages to other agents of the tenant (needs the `agents` grant naming them). */
export const agents = Object.freeze({
  /** Send `message` (any JSON value) to the agent named `to`: `{messageId, runId}`. */
  send: native.agents
    ? (to, message) => {
        const json = JSON.stringify(message);
        if (json === undefined) throw new TypeError("the message must be a JSON value");
        return call(native.agents, JSON.stringify({ to: String(to), message: json }));
      }
    : unavailable("agents.send"),
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
