/**
 * Delta's platform API from TypeScript (Node 20+ and browsers).
 *
 * The types of every path, parameter and body are generated from the API's
 * OpenAPI document (`schema.d.ts`, openapi-typescript); calls go through
 * openapi-fetch. This layer adds what a generator cannot know: credentials
 * (an API key, or a session that refreshes itself), an `Idempotency-Key` on
 * every mutation so that retries of 429/502/503/504 and network errors
 * execute at most once, pagination, errors as `DeltaError` with the
 * request's id, and a run's log as a stream of events.
 */

import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";

/** The API's error envelope. */
export type ErrorBody = components["schemas"]["Error"];

/** Statuses after which the same request (same key) is sent again. */
const RETRIED = new Set([429, 502, 503, 504]);
const MUTATIONS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** An error answer: HTTP status, stable code, message and request id. */
export class DeltaError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | undefined,
    readonly details: unknown,
  ) {
    super(`${status} ${code}: ${message} (request ${requestId ?? "?"})`);
    this.name = "DeltaError";
  }

  static async from(response: Response): Promise<DeltaError> {
    const text = await response.text();
    let body: Partial<ErrorBody> = {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed !== null && typeof parsed === "object") body = parsed as Partial<ErrorBody>;
    } catch {
      // Not JSON: the status and the text say what there is.
    }
    return new DeltaError(
      response.status,
      body.code ?? "http_error",
      body.message ?? text.slice(0, 200),
      body.request_id ?? response.headers.get("x-request-id") ?? undefined,
      body.details,
    );
  }
}

/** One event of a run's log stream: `log` lines, then one `end`. */
export interface LogEvent {
  event: string;
  data: unknown;
  id: string | undefined;
}

export interface DeltaOptions {
  /** e.g. `http://127.0.0.1:7420`. */
  baseUrl: string;
  /** An API key (`dk_...`); or call `login` for a session. */
  apiKey?: string;
  /** Retries of 429/502/503/504 and network errors (default 3). */
  retries?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** The tenant to act in (`X-App-ID`; default: the credential's own). */
  appId?: string;
}

interface Session {
  access: string;
  refresh: string;
}

/** A client of the Delta API (see the module's documentation). */
export class Delta {
  /** The generated, typed client: `delta.api.GET("/v1/agents/{id}", ...)`. */
  readonly api: Client<paths>;
  readonly baseUrl: string;
  private apiKey: string | undefined;
  private session: Session | undefined;
  /** `X-App-ID` of every request (see `useApp`). */
  appId: string | undefined;
  private readonly retries: number;
  private readonly fetchImpl: typeof globalThis.fetch;

  constructor(options: DeltaOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.retries = options.retries ?? 3;
    this.appId = options.appId;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.api = createClient<paths>({
      baseUrl: this.baseUrl,
      fetch: (request: Request) => this.send(request),
    });
  }

  /** Start a session (access and refresh tokens, refreshed as needed). */
  async login(email: string, password: string, tenantId?: string): Promise<void> {
    const body: Record<string, string> = { email, password };
    if (tenantId !== undefined) body["tenant_id"] = tenantId;
    const response = await this.fetchImpl(`${this.baseUrl}/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await DeltaError.from(response);
    this.take((await response.json()) as components["schemas"]["TokenResponse"]);
    this.apiKey = undefined;
  }

  /** Forget the session's access token (tests: the next call refreshes). */
  expireAccessToken(): void {
    if (this.session) this.session.access = "expired";
  }

  /**
   * The data of an openapi-fetch answer, or a thrown `DeltaError`:
   * `const agent = await delta.unwrap(delta.api.GET(...))`.
   */
  async unwrap<D>(call: Promise<{ data?: D; error?: unknown; response: Response }>): Promise<D> {
    const { data, error, response } = await call;
    if (!response.ok) {
      // openapi-fetch has read the body into `error`.
      const body = (error ?? {}) as Partial<ErrorBody>;
      throw new DeltaError(
        response.status,
        body.code ?? "http_error",
        body.message ?? response.statusText,
        body.request_id ?? response.headers.get("x-request-id") ?? undefined,
        body.details,
      );
    }
    return data as D;
  }

  /**
   * Every item of a list, page after page: `page(after)` fetches one page,
   * spreading `after` (`{}` first, then `{ cursor }`) into its query.
   */
  async *paginate<T>(
    page: (after: { cursor?: string }) => Promise<{ items: T[]; next_cursor?: string | null }>,
  ): AsyncGenerator<T> {
    let after: { cursor?: string } = {};
    for (;;) {
      const result = await page(after);
      yield* result.items;
      if (!result.next_cursor) return;
      after = { cursor: result.next_cursor };
    }
  }

  /** Upload a component (or a JavaScript agent's source). */
  async uploadComponent(
    bytes: BodyInit,
    options: { javascript?: boolean } = {},
  ): Promise<components["schemas"]["Component"]> {
    const response = await this.send(
      new Request(`${this.baseUrl}/v1/components`, {
        method: "POST",
        headers: {
          "Content-Type": options.javascript ? "text/javascript" : "application/wasm",
        },
        body: bytes,
      }),
    );
    if (!response.ok) throw await DeltaError.from(response);
    return (await response.json()) as components["schemas"]["Component"];
  }

  /** A run's log as it happens: its lines, then the `end` event. */
  async *streamRunLogs(runId: string): AsyncGenerator<LogEvent> {
    const response = await this.send(
      new Request(`${this.baseUrl}/v1/runs/${encodeURIComponent(runId)}/logs`),
    );
    if (!response.ok) throw await DeltaError.from(response);
    if (!response.body) return;
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    let buffered = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline).replace(/\r$/, "");
        buffered = buffered.slice(newline + 1);
        const event = parser.feed(line);
        if (event) yield event;
        newline = buffered.indexOf("\n");
      }
    }
    const last = parser.feed("");
    if (last) yield last;
  }

  /** Every request goes through here: credentials, key, retries, refresh. */
  private async send(request: Request): Promise<Response> {
    if (MUTATIONS.has(request.method) && !request.headers.has("Idempotency-Key")) {
      request.headers.set("Idempotency-Key", crypto.randomUUID());
    }
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const attemptRequest = request.clone();
      const bearer = this.apiKey ?? this.session?.access;
      if (bearer) attemptRequest.headers.set("Authorization", `Bearer ${bearer}`);
      if (this.appId !== undefined && !attemptRequest.headers.has("X-App-ID")) {
        attemptRequest.headers.set("X-App-ID", this.appId);
      }
      let response: Response;
      try {
        response = await this.fetchImpl(attemptRequest);
      } catch (error) {
        if (attempt >= this.retries) throw error;
        await sleep(backoff(attempt, null));
        continue;
      }
      if (response.status === 401 && this.session && !this.apiKey && !refreshed) {
        refreshed = true;
        if (await this.refresh()) continue;
      }
      if (!RETRIED.has(response.status) || attempt >= this.retries) return response;
      await sleep(backoff(attempt, response.headers.get("retry-after")));
    }
  }

  private async refresh(): Promise<boolean> {
    if (!this.session) return false;
    const response = await this.fetchImpl(`${this.baseUrl}/v1/auth/refresh`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: this.session.refresh }),
    });
    if (!response.ok) return false;
    this.take((await response.json()) as components["schemas"]["TokenResponse"]);
    return true;
  }

  private take(tokens: components["schemas"]["TokenResponse"]): void {
    this.session = { access: tokens.access_token, refresh: tokens.refresh_token };
  }
}

function backoff(attempt: number, retryAfter: string | null): number {
  if (retryAfter !== null && /^\d+$/.test(retryAfter)) return Math.min(Number(retryAfter), 30) * 1000;
  return Math.min(200 * 2 ** attempt, 5000);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Server-sent events, line by line (the fields the API sends). */
class SseParser {
  private event = "message";
  private data: string[] = [];
  private id: string | undefined;

  feed(line: string): LogEvent | undefined {
    if (line === "") {
      let done: LogEvent | undefined;
      if (this.data.length > 0) {
        const text = this.data.join("\n");
        let data: unknown = text;
        try {
          data = JSON.parse(text);
        } catch {
          // Plain text data stays text.
        }
        done = { event: this.event, data, id: this.id };
      }
      this.event = "message";
      this.data = [];
      this.id = undefined;
      return done;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
    return undefined;
  }
}
