// The dashboard in a real browser (Debian's Chromium through
// playwright-core) against a real control plane and node: `delta up`
// (DELTA_BIN, default target/debug/delta) with hello-agent (DELTA_GUESTS).
// Screenshots of the main pages go to DASHBOARD_SCREENSHOTS (default
// target/dashboard-screenshots).

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../../..");
const shots = process.env["DASHBOARD_SCREENSHOTS"] ?? join(root, "target/dashboard-screenshots");
const chromiumPath = process.env["CHROMIUM"] ?? "/usr/bin/chromium";

/** @type {import("node:child_process").ChildProcess | undefined} */
let server;
let url = "";
let apiKey = "";
let password = "";
/** @type {import("playwright-core").Browser | undefined} */
let browser;

/** @returns {Promise<number>} */
function freePort() {
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

/**
 * The API as the admin (API key).
 * @param {string} method @param {string} path @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function call(method, path, body) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${apiKey}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

before(async () => {
  const binary = process.env["DELTA_BIN"] ?? join(root, "target/debug/delta");
  const guests = process.env["DELTA_GUESTS"] ?? join(root, "target/guests");
  const work = mkdtempSync(join(tmpdir(), "delta-dashboard-"));
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
  await new Promise((ready, fail) => {
    const timer = setTimeout(() => fail(new Error(`delta up did not start:\n${printed}`)), 180_000);
    /** @param {Buffer} chunk */
    const read = (chunk) => {
      printed += chunk.toString();
      if (printed.includes("Stop with Ctrl-C.")) {
        clearTimeout(timer);
        ready(undefined);
      }
    };
    up.stdout?.on("data", read);
    up.stderr?.on("data", read);
    up.on("exit", (code) => fail(new Error(`delta up exited (${code}):\n${printed}`)));
  });
  url = /API\s+(http:\/\/\S+)/.exec(printed)?.[1] ?? `http://${listen}`;
  password = /admin password\s+(\S+)/.exec(printed)?.[1] ?? "";
  assert.ok(password, `no admin password in:\n${printed}`);
  apiKey = readFileSync(join(state, "admin-api-key"), "utf8").trim();
  mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
});

test("sign in, approve a bot's token request, see usage and follow a live log", async () => {
  // A main agent with a budget, a bot under it asking for more, and runs
  // so that usage has something to chart.
  const agents = await call("GET", "/v1/agents");
  const main = agents.items.find((/** @type {any} */ a) => a.name === "hello-agent");
  assert.ok(main, JSON.stringify(agents));
  await call("PUT", `/v1/agents/${main.id}/budget`, {
    allocated: 10_000,
    auto_approve_limit: 0,
    max_request: 5_000,
  });
  const bot = await call("POST", "/v1/agents", {
    name: "helper-bot",
    kind: "bot",
    parent_agent_id: main.id,
    component: main.component,
  });
  const asked = await call("POST", `/v1/agents/${bot.id}/token-requests`, {
    amount: 900,
    reason: "a bigger batch",
  });
  assert.equal(asked.status, "pending");
  for (const name of ["chart", "data"]) {
    await call("POST", `/v1/agents/${main.id}/runs?wait=true`, { input: { name } });
  }
  const before = await call("GET", `/v1/agents/${bot.id}/budget`);

  assert.ok(browser);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  /** @type {string[]} */
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // The browser logs every error status it receives (the wrong password's
    // 401 below): those are answers the page handles, not page errors.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(`console: ${message.text()}`);
    }
  });

  // Sign in: a wrong password is refused on the page, the right one enters.
  await page.goto(url);
  await page.getByLabel("Email").fill("admin@delta.local");
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: /wrong email or password/i }).waitFor();
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Agents and bots" }).waitFor();
  await page.getByRole("link", { name: "helper-bot" }).waitFor();
  await page.screenshot({ path: join(shots, "agents.png"), fullPage: true });

  // Approve the bot's request: the page says its budget grew by the amount.
  await page.getByRole("link", { name: "Token requests" }).click();
  const row = page.getByRole("row").filter({ hasText: "helper-bot" });
  await row.getByText("a bigger batch").waitFor();
  await page.screenshot({ path: join(shots, "token-requests.png"), fullPage: true });
  await row.getByRole("button", { name: "Approve" }).click();
  const expected = (before.allocated + 900).toLocaleString("en");
  await page.getByRole("status").filter({ hasText: `budget is now ${expected} tokens` }).waitFor();
  await page.getByText("No requests are waiting.").waitFor();
  const afterApproval = await call("GET", `/v1/agents/${bot.id}/budget`);
  assert.equal(afterApproval.allocated, before.allocated + 900);

  // Usage: the chart renders from the runs above.
  await page.getByRole("link", { name: "Usage" }).click();
  await page.locator("#usage-chart canvas").waitFor();
  await page.locator("#usage-chart .u-legend").getByText("runs").waitFor();
  await page.screenshot({ path: join(shots, "usage.png"), fullPage: true });

  // A run started from the page, its log followed live to the end.
  await page.getByRole("link", { name: "Agents" }).click();
  await page.getByRole("link", { name: "hello-agent", exact: true }).click();
  await page.getByLabel("Input (JSON)").fill("not json");
  await page.getByRole("button", { name: "Start run" }).click();
  await page.getByRole("alert").filter({ hasText: "The input is not JSON." }).waitFor();
  await page.getByLabel("Input (JSON)").fill('{"name": "browser"}');
  await page.getByRole("button", { name: "Start run" }).click();
  await page.waitForURL(/#\/runs\/run_/);
  await page
    .locator("#run-state")
    .filter({ hasText: "Finished: completed" })
    .waitFor({ timeout: 15_000 })
    .catch(async (/** @type {unknown} */ error) => {
      const state = await page.locator("#run-state").textContent();
      const log = await page.locator("#run-log").textContent();
      throw new Error(`${error}\nstate: ${state}\nlog: ${log}\nproblems: ${problems.join("; ")}`);
    });
  assert.match((await page.locator("#run-log").textContent()) ?? "", /Hello, browser!/);
  await page.screenshot({ path: join(shots, "run-log.png"), fullPage: true });

  // API keys: a new key's secret is shown once, and it works; revoked, it
  // does not.
  await page.getByRole("link", { name: "API keys" }).click();
  await page.getByLabel("Name of a new key").fill("from-the-browser");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.locator("#new-key-secret").textContent()) ?? "";
  assert.match(secret, /^dk_/);
  const works = await fetch(`${url}/v1/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(works.status, 200);
  await page.getByRole("button", { name: "Revoke from-the-browser" }).click();
  await page.getByRole("status").filter({ hasText: "Revoked from-the-browser." }).waitFor();
  await page.getByRole("row").filter({ hasText: "from-the-browser" }).getByText("revoked").waitFor();
  const revoked = await fetch(`${url}/v1/me`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(revoked.status, 401);
  await page.screenshot({ path: join(shots, "api-keys.png"), fullPage: true });

  // A phone's width: the same pages, no horizontal scrolling of the page.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole("link", { name: "Token requests" }).click();
  await page.getByText("No requests are waiting.").waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(overflow, false, "the page scrolls sideways at a phone's width");

  // The tenant switcher: a second tenant of the admin's, then back.
  await page.setViewportSize({ width: 1280, height: 800 });
  const second = await call("POST", "/v1/tenants", { name: "Second shop" });
  // A reload keeps the session (its refresh token is in sessionStorage).
  await page.reload();
  await page.getByRole("link", { name: "Agents" }).click();
  await page.getByRole("heading", { name: "Agents and bots" }).waitFor();
  await page.getByLabel("Tenant").selectOption({ label: "Second shop" });
  await page.getByRole("status").filter({ hasText: "Now acting in Second shop" }).waitFor();
  await page.getByText("No agents yet").waitFor();
  await page.getByLabel("Tenant").selectOption({ label: "default" });
  await page.getByRole("link", { name: "helper-bot" }).waitFor();
  assert.ok(second.id);

  // Nothing of the session in the URL or in localStorage.
  assert.doesNotMatch(page.url(), /token|eyJ/);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.deepEqual(problems, []);
});
