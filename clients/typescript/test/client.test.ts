// The TypeScript client against a real control plane and node: `delta up`
// (DELTA_BIN, default ../../target/debug/delta) with hello-agent deployed
// (DELTA_GUESTS, default ../../target/guests).

import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { Delta, DeltaError } from "../src/index.js";

const root = resolve(import.meta.dirname, "../../../..");
let server: ChildProcess | undefined;
let url = "";
let apiKey = "";

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.on("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => done(port));
    });
  });
}

before(async () => {
  const binary = process.env["DELTA_BIN"] ?? join(root, "target/debug/delta");
  const guests = process.env["DELTA_GUESTS"] ?? join(root, "target/guests");
  const work = mkdtempSync(join(tmpdir(), "delta-ts-"));
  const examples = join(work, "examples");
  mkdirSync(examples);
  symlinkSync(join(guests, "hello-agent.wasm"), join(examples, "hello-agent.wasm"));
  const state = join(work, "state");
  const listen = `127.0.0.1:${await freePort()}`;
  const up = spawn(
    binary,
    ["up", "--listen", listen, "--state-dir", state, "--examples", examples, "--no-rate-limits"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  server = up;
  let printed = "";
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`delta up did not start:\n${printed}`)), 180_000);
    const read = (chunk: Buffer): void => {
      printed += chunk.toString();
      if (printed.includes("Stop with Ctrl-C.")) {
        clearTimeout(timer);
        ready();
      }
    };
    up.stdout?.on("data", read);
    up.stderr?.on("data", read);
    up.on("exit", (code) => fail(new Error(`delta up exited (${code}):\n${printed}`)));
  });
  url = /API\s+(http:\/\/\S+)/.exec(printed)?.[1] ?? `http://${listen}`;
  apiKey = readFileSync(join(state, "admin-api-key"), "utf8").trim();
});

after(() => {
  server?.kill("SIGTERM");
});

async function helloAgent(delta: Delta): Promise<string> {
  for await (const agent of delta.paginate((after) =>
    delta.unwrap(delta.api.GET("/v1/agents", { params: { query: { ...after } } })),
  )) {
    if (agent.name === "hello-agent") return agent.id;
  }
  throw new Error("hello-agent is not deployed");
}

test("an API key lists agents and a run answers", async () => {
  const delta = new Delta({ baseUrl: url, apiKey });
  const id = await helloAgent(delta);
  const run = await delta.unwrap(
    delta.api.POST("/v1/agents/{id}/runs", {
      params: { path: { id }, query: { wait: true } },
      body: { input: { name: "TypeScript" } },
    }),
  );
  assert.ok("outcome" in run, JSON.stringify(run));
  assert.match(JSON.stringify(run.outcome), /Hello, TypeScript!/);
});

test("pages are iterated to the end", async () => {
  const delta = new Delta({ baseUrl: url, apiKey });
  const names = new Set([1, 2, 3].map(() => `page-${randomUUID().slice(0, 8)}`));
  for (const name of names) {
    await delta.unwrap(delta.api.POST("/v1/api-keys", { body: { name } }));
  }
  const seen: string[] = [];
  for await (const key of delta.paginate((after) =>
    delta.unwrap(delta.api.GET("/v1/api-keys", { params: { query: { limit: 1, ...after } } })),
  )) {
    seen.push(key.name);
  }
  for (const name of names) assert.ok(seen.includes(name), name);
  assert.equal(new Set(seen).size, seen.length, "a key was listed twice");
});

test("a retried mutation with its key executes once", async () => {
  const delta = new Delta({ baseUrl: url, apiKey });
  const key = randomUUID();
  const create = () =>
    delta.unwrap(
      delta.api.POST("/v1/api-keys", {
        body: { name: "once" },
        params: { header: { "Idempotency-Key": key } },
      }),
    );
  const first = await create();
  const again = await create();
  assert.equal(first.id, again.id);
  assert.equal(first.key, again.key);
});

test("errors carry the code and the request id", async () => {
  const delta = new Delta({ baseUrl: url, apiKey });
  await assert.rejects(
    delta.unwrap(delta.api.GET("/v1/agents/{id}", { params: { path: { id: "agt_nosuchagent" } } })),
    (error: unknown) =>
      error instanceof DeltaError &&
      error.status === 404 &&
      error.code === "not_found" &&
      typeof error.requestId === "string",
  );
  const stranger = new Delta({ baseUrl: url, apiKey: "dk_wrong_key" });
  await assert.rejects(
    stranger.unwrap(stranger.api.GET("/v1/agents")),
    (error: unknown) => error instanceof DeltaError && error.status === 401,
  );
});

test("a session logs in and refreshes itself", async () => {
  const email = `ts-${randomUUID().slice(0, 8)}@example.com`;
  const password = "a long enough password";
  const anonymous = new Delta({ baseUrl: url });
  await anonymous.unwrap(anonymous.api.POST("/v1/auth/register", { body: { email, password } }));
  const delta = new Delta({ baseUrl: url });
  await delta.login(email, password);
  assert.deepEqual((await delta.unwrap(delta.api.GET("/v1/api-keys"))).items, []);
  delta.expireAccessToken();
  assert.deepEqual((await delta.unwrap(delta.api.GET("/v1/api-keys"))).items, []);
});

test("a run's log streams to its end", async () => {
  const delta = new Delta({ baseUrl: url, apiKey });
  const id = await helloAgent(delta);
  const accepted = await delta.unwrap(
    delta.api.POST("/v1/agents/{id}/runs", { params: { path: { id } }, body: { input: {} } }),
  );
  const events = [];
  for await (const event of delta.streamRunLogs(accepted.id)) events.push(event);
  assert.ok(events.length > 0, "no events");
  assert.equal(events.at(-1)?.event, "end", JSON.stringify(events));
});

test("X-App-ID names the tenant to act in", async () => {
  const delta = new Delta({ baseUrl: url, apiKey, appId: "ten_somebody_else" });
  await assert.rejects(
    delta.unwrap(delta.api.GET("/v1/agents")),
    (error: unknown) =>
      error instanceof DeltaError && error.status === 403 && error.code === "app_not_allowed",
  );
});
