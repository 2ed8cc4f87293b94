// TypeScript declarations for Delta's JavaScript agents and verifiers.
//
// Scripts are ES modules run by QuickJS inside Delta's Wasmtime sandbox. The
// only importable module is "delta"; there is no filesystem, network,
// environment, timers or other module. Copy this file next to your script
// (or point `typeRoots`/`paths` at it) for editor completion.

declare module "delta" {
  /** What `run` receives. */
  export interface Task {
    /** Unique id of this run (opaque). */
    runId: string;
    /** Id of the agent deployment. */
    agentId: string;
    /** Tenant owning the agent. */
    tenantId: string;
    /** The task input, already parsed from JSON. */
    input: any;
    /** Milliseconds left when `run` was entered; the host stops the run at zero. */
    deadlineMs: number;
  }

  /**
   * A capability refusal, or an error the script throws on purpose. Thrown
   * out of `run`, any object with a string `code` becomes the run's agent
   * error `{code, message, retryable}`; anything else crashes the run.
   *
   * Capability codes are those of the Rust SDK's `AgentError`:
   * `llm-<kind>`, `messaging-<kind>`, `budget-<kind>` (for example
   * `llm-budget-exceeded`), plus `invalid-request` for a malformed request
   * and `capability-not-available` for a verifier calling anything but log.
   */
  export class DeltaError extends Error {
    constructor(code: string, message: string, details?: Record<string, unknown>);
    code: string;
    retryable: boolean;
    /** The WIT variant, e.g. `budget-exceeded` (capability refusals only). */
    kind?: string;
    /** `llm`, `messaging` or `budget` (capability refusals only). */
    capability?: string;
    /** `budget-exceeded`: tokens the call needed and tokens available. */
    needed?: number;
    available?: number;
    /** `rate-limited`: when to retry. */
    retryAfterMs?: number;
    /** `variable-*` refusals of messaging: the variable's name. */
    variable?: string;
    /** `invalid-amount` of budget.request: the per-request limit. */
    limit?: number;
  }

  export type Level = "trace" | "debug" | "info" | "warn" | "error";

  /** Log lines of the run (bounded by the host; `console.*` writes here too). */
  export const log: {
    trace(...values: unknown[]): void;
    debug(...values: unknown[]): void;
    info(...values: unknown[]): void;
    warn(...values: unknown[]): void;
    error(...values: unknown[]): void;
    write(level: Level, ...values: unknown[]): void;
  };

  export interface Message {
    role: "system" | "user" | "assistant";
    content: string;
  }

  export interface CompletionRequest {
    /** Model or operator alias; must be granted to the agent. */
    model: string;
    /** Oldest first; must not be empty. */
    messages: Message[];
    /** Upper bound on generated tokens (default 1024); reserved up front. */
    maxTokens?: number;
    temperature?: number;
    stop?: string[];
  }

  export interface Completion {
    text: string;
    /** The concrete model that answered. */
    model: string;
    finishReason: "stop" | "length" | "other";
    usage: { inputTokens: number; outputTokens: number };
  }

  /** Chat completions, paid from the agent's token budget. Blocks until done. */
  export const llm: {
    /** @throws DeltaError `llm-not-configured`, `llm-model-not-allowed`,
     *  `llm-budget-exceeded`, `llm-invalid-request`, `llm-rate-limited`,
     *  `llm-unavailable`, `invalid-request`. */
    complete(request: CompletionRequest): Completion;
  };

  export interface SendRequest {
    channel: "email" | "sms";
    /** An approved template for the channel. */
    templateId: string;
    /** Email address or E.164 phone number, on the agent's allowed list. */
    recipient: string;
    /** Template variables (strings only). */
    variables?: Record<string, string>;
  }

  /** Templated messages under the operator's rules. */
  export const messaging: {
    /** @throws DeltaError `messaging-<kind>` (template-not-found,
     *  recipient-not-allowed, budget-exceeded, rate-limited, ...). */
    send(request: SendRequest): { messageId: string; tokensCharged: number };
  };

  export interface Balance {
    allocated: number;
    spent: number;
    reserved: number;
    available: number;
  }

  export interface TokenRequest {
    id: string;
    amount: number;
    reason: string;
    status: "pending" | "approved" | "denied" | "expired";
  }

  /** The agent's token budget. */
  export const budget: {
    remaining(): Balance;
    /** Ask the parent agent for more tokens (bots only). */
    request(amount: number, reason: string): TokenRequest;
    poll(id: string): TokenRequest;
  };

  export interface KvEntry {
    key: string;
    /** A string, or a Uint8Array when the stored bytes are not UTF-8. */
    value: string | Uint8Array;
    /** Pass to `compareAndSwap`; never 0. */
    version: number;
  }

  /** The agent's durable state (grant `"kv": true`). */
  export const kv: {
    get(key: string): KvEntry | null;
    /** The new version. */
    set(key: string, value: string | Uint8Array): number;
    /** Whether the key existed. */
    delete(key: string): boolean;
    list(
      prefix?: string,
      page?: { cursor?: string | null; limit?: number },
    ): { keys: string[]; nextCursor: string | null };
    /** @throws DeltaError `kv-conflict` with `current` (0: absent). */
    compareAndSwap(key: string, expected: number, value: string | Uint8Array): number;
    /** Read, compute, swap; retried on conflict. */
    update(
      key: string,
      fn: (old: string | Uint8Array | null) => string | Uint8Array,
      attempts?: number,
    ): { version: number; value: string | Uint8Array };
  };

  export interface HttpRequest {
    method?: "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";
    url: string;
    /** Values may hold `{{secret:NAME}}` (a secret the grant lists). */
    headers?: Record<string, string> | [string, string][];
    body?: string | Uint8Array | null;
  }

  /** Outbound HTTP under the agent's allow-list (grant `http`). */
  export const http: {
    /** @throws DeltaError `http-<kind>` (not-allowed, blocked-address,
     *  secret-not-allowed, too-large, rate-limited, timeout, failed, ...). */
    request(request: HttpRequest | string): {
      status: number;
      headers: [string, string][];
      body: string | Uint8Array;
    };
  };

  /** Messages to other agents of the tenant (grant `agents` naming them). */
  export const agents: {
    /** Starts a run of `to` with input `{message, message_id, from}`.
     *  @throws DeltaError `agents-<kind>` (not-allowed, unknown-agent,
     *  too-large, too-deep, too-many, rate-limited, ...). */
    send(to: string, message: unknown): { messageId: string; runId: string };
  };

  /** What a verifier's `verify(spec, submission)` returns. */
  export interface Verdict {
    passed: boolean;
    /** 0..=1000; defaults to 1000 when passed, else 0. */
    scoreMilli?: number;
    reasons?: string[];
  }
}

/** `console.log` and friends write to the run's log (`log`). */
declare const console: {
  log(...values: unknown[]): void;
  info(...values: unknown[]): void;
  debug(...values: unknown[]): void;
  trace(...values: unknown[]): void;
  warn(...values: unknown[]): void;
  error(...values: unknown[]): void;
};
