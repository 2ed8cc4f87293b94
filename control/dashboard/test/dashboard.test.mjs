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
/** @type {Buffer | undefined} */
let verifierWasm;

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
  return callAs(apiKey, "", method, path, body);
}

/**
 * The API with `token` (an API key or a session's access token), acting in
 * tenant `app` (none: the credential's own); a Buffer body is uploaded as
 * a component.
 * @param {string} token @param {string} app @param {string} method @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function callAs(token, app, method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${token}` };
  if (app) headers["X-App-ID"] = app;
  if (body instanceof Buffer) headers["Content-Type"] = "application/wasm";
  else if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : body instanceof Buffer ? new Uint8Array(body) : JSON.stringify(body),
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
  // hello-agent for runs, email-bot for the message log (both deployed by
  // `delta up`); the json-verifier is uploaded by the bounties' test.
  for (const guest of ["hello-agent", "email-bot"]) {
    symlinkSync(join(guests, `${guest}.wasm`), join(examples, `${guest}.wasm`));
  }
  verifierWasm = readFileSync(join(guests, "json-verifier.wasm"));
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

/**
 * The "Allocated" cell of a budget tree row.
 * @param {import("playwright-core").Locator} row
 */
function allocatedCell(row) {
  return row.getByRole("cell").nth(3);
}

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
  // The budget tree: the user with the reserve pool, the main agent, its bot.
  const botRow = page.getByRole("row").filter({ has: page.getByRole("link", { name: "helper-bot" }) });
  assert.equal(await allocatedCell(botRow).textContent(), before.allocated.toLocaleString("en"));
  const mainRow = page.getByRole("row").filter({ has: page.getByRole("link", { name: "hello-agent", exact: true }) });
  const mainBefore = await call("GET", `/v1/agents/${main.id}/budget`);
  assert.equal(await allocatedCell(mainRow).textContent(), mainBefore.allocated.toLocaleString("en"));
  const mine = await call("GET", "/v1/budget");
  const you = page.getByRole("row").filter({ hasText: "You" });
  assert.equal(await allocatedCell(you).textContent(), mine.monthly_allocation.toLocaleString("en"));
  assert.equal(await you.getByRole("cell").nth(5).textContent(), `${mine.pool.toLocaleString("en")} in reserve`);
  await page.screenshot({ path: join(shots, "agents.png"), fullPage: true });

  // Approve the bot's request: the page says its budget grew by the amount.
  await page.getByRole("link", { name: "Token requests" }).click();
  const row = page.getByRole("row").filter({ hasText: "helper-bot" });
  await row.getByText("a bigger batch").waitFor();
  // The requester's spend so far, next to its request.
  await row.getByText(`${before.spent.toLocaleString("en")} spent of ${before.allocated.toLocaleString("en")}`).waitFor();
  await page.screenshot({ path: join(shots, "token-requests.png"), fullPage: true });
  await row.getByRole("button", { name: "Approve" }).click();
  const expected = (before.allocated + 900).toLocaleString("en");
  await page.getByRole("status").filter({ hasText: `budget is now ${expected} tokens` }).waitFor();
  await page.getByText("No requests are waiting.").waitFor();
  const afterApproval = await call("GET", `/v1/agents/${bot.id}/budget`);
  assert.equal(afterApproval.allocated, before.allocated + 900);
  // The tree shows the bot's new allocation, carved from its main agent's.
  await page.getByRole("link", { name: "Agents", exact: true }).click();
  await botRow.waitFor();
  assert.equal(await allocatedCell(botRow).textContent(), expected);
  const mainAfter = await call("GET", `/v1/agents/${main.id}/budget`);
  assert.equal(await allocatedCell(mainRow).textContent(), mainAfter.allocated.toLocaleString("en"));

  // Usage: the chart renders from the runs above.
  await page.getByRole("link", { name: "Usage" }).click();
  await page.locator("#usage-chart canvas").waitFor();
  await page.locator("#usage-chart .u-legend").getByText("runs").waitFor();
  // Per agent, and one agent's remaining budget alongside its usage.
  const usage = await call("GET", "/v1/usage?group_by=agent&kind=runs");
  const mainRuns = usage.rows
    .filter((/** @type {any} */ r) => r.agent_id === main.id)
    .reduce((/** @type {number} */ sum, /** @type {any} */ r) => sum + r.quantity, 0);
  assert.ok(mainRuns >= 2, JSON.stringify(usage));
  const perAgent = page.locator("section", { has: page.getByRole("heading", { name: "Per agent" }) });
  assert.equal(await perAgent.getByRole("row").filter({ hasText: "hello-agent" }).getByRole("cell").nth(1).textContent(), String(mainRuns));
  await page.screenshot({ path: join(shots, "usage.png"), fullPage: true });
  await page.getByLabel("Agent", { exact: true }).selectOption({ label: "hello-agent" });
  await page.getByRole("button", { name: "Show" }).click();
  const mainNow = await call("GET", `/v1/agents/${main.id}/budget`);
  await page.locator("#usage-budget").filter({
    hasText: `hello-agent: ${mainNow.available.toLocaleString("en")} tokens remaining of ${mainNow.allocated.toLocaleString("en")}`,
  }).waitFor();
  assert.equal(await perAgent.getByRole("row").filter({ hasText: "helper-bot" }).count(), 0);
  await page.getByLabel("Agent", { exact: true }).selectOption({ index: 0 });
  await page.getByRole("button", { name: "Show" }).click();

  // A run started from the page, its log followed live to the end.
  await page.getByRole("link", { name: "Agents", exact: true }).click();
  await page.getByRole("link", { name: "hello-agent", exact: true }).click();
  // Its deploy history: the creation, on delta up's node, as the API has it.
  const history = await call("GET", `/v1/agents/${main.id}/deployments`);
  assert.equal(history.items.at(-1).reason, "created", JSON.stringify(history));
  const deploys = page.getByRole("table", { name: "Deployments, newest first" });
  await deploys.getByRole("row").nth(history.items.length).waitFor();
  assert.equal(await deploys.getByRole("row").count(), history.items.length + 1);
  assert.match(await deploys.getByRole("row").nth(history.items.length).textContent() ?? "", /created/);
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
  await page.getByRole("link", { name: "Agents", exact: true }).click();
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

/**
 * A new tab signed in as the admin, and the page errors it collects.
 * @returns {Promise<{ page: import("playwright-core").Page, problems: string[] }>}
 */
async function signedInPage() {
  assert.ok(browser);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  /** @type {string[]} */
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(`console: ${message.text()}`);
    }
  });
  await page.goto(url);
  await page.getByLabel("Email").fill("admin@delta.local");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Agents and bots" }).waitFor();
  return { page, problems };
}

/** A session's access token for the admin (operator routes, X-App-ID). @returns {Promise<string>} */
async function adminAccess() {
  const response = await fetch(`${url}/v1/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email: "admin@delta.local", password }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).access_token;
}

/**
 * Retry `check` (clicking `refresh` before each try) until it passes.
 * @param {string} what @param {() => Promise<void>} refresh @param {() => Promise<boolean>} check
 */
async function eventually(what, refresh, check) {
  const deadline = Date.now() + 45_000;
  for (;;) {
    await refresh();
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((done) => setTimeout(done, 1_000));
  }
}

test("templates are created, approved and rejected; the message log shows a run's send", async () => {
  const { page, problems } = await signedInPage();
  await page.getByRole("link", { name: "Templates" }).click();
  await page.getByText("No templates yet").waitFor();

  // A template the email bot sends, created on the page: a draft.
  await page.getByLabel("Name", { exact: true }).fill("welcome");
  await page.getByLabel("Subject (email)").fill("Welcome, {{ name }}");
  await page.getByLabel("Body").fill("Hello {{ name }}!");
  await page.getByLabel(/^Variables/).fill("not json");
  await page.getByRole("button", { name: "Create template" }).click();
  await page.getByRole("alert").filter({ hasText: "The variables are not JSON." }).waitFor();
  await page.getByLabel(/^Variables/).fill('{"name": 32}');
  await page.getByRole("button", { name: "Create template" }).click();
  await page.getByRole("status").filter({ hasText: "Created welcome (draft)" }).waitFor();
  const welcome = page.getByRole("row").filter({ hasText: "welcome" });
  await welcome.getByText("draft", { exact: true }).waitFor();

  // A second one, rejected with a reason. Without a subject the API
  // refuses it: the form says why, with the request's id.
  await page.getByLabel("Name", { exact: true }).fill("promo");
  await page.getByLabel("Body").fill("Buy now!");
  await page.getByRole("button", { name: "Create template" }).click();
  await page.getByRole("alert").filter({ hasText: /need a subject \(invalid_template, request [0-9a-f]{8,}\)/ }).waitFor();
  await page.getByLabel("Subject (email)").fill("Offer");
  await page.getByRole("button", { name: "Create template" }).click();
  await page.getByRole("status").filter({ hasText: "Created promo (draft)" }).waitFor();
  await page.getByLabel("Reason for rejecting promo").fill("too pushy");
  await page.getByRole("button", { name: "Reject promo" }).click();
  await page.getByRole("status").filter({ hasText: "Rejected promo." }).waitFor();
  await page.getByRole("row").filter({ hasText: "promo" }).getByText("too pushy").waitFor();

  // Approve welcome; the status filter shows each where it belongs.
  await page.getByRole("button", { name: "Approve welcome" }).click();
  await page.getByRole("status").filter({ hasText: "Approved welcome" }).waitFor();
  await welcome.getByText("approved", { exact: true }).waitFor();
  await page.getByLabel("Show").selectOption("draft");
  await page.getByText("No draft templates.").waitFor();
  await page.getByLabel("Show").selectOption("rejected");
  await page.getByRole("row").filter({ hasText: "promo" }).waitFor();
  assert.equal(await page.getByRole("row").filter({ hasText: "welcome" }).count(), 0);
  await page.getByLabel("Show").selectOption({ index: 0 });
  await welcome.waitFor();
  await page.screenshot({ path: join(shots, "templates.png"), fullPage: true });
  const templates = await call("GET", "/v1/templates");
  const stored = new Map(templates.items.map((/** @type {any} */ t) => [t.name, t]));
  assert.equal(stored.get("welcome")?.status, "approved");
  assert.equal(stored.get("promo")?.status, "rejected");
  assert.equal(stored.get("promo")?.rejection_reason, "too pushy");

  // The email bot, granted the template, sends it in a run; the attempt
  // reaches the message log through the node's usage reports.
  const agents = await call("GET", "/v1/agents");
  const mailer = agents.items.find((/** @type {any} */ a) => a.name === "email-bot");
  assert.ok(mailer, JSON.stringify(agents));
  await call("PATCH", `/v1/agents/${mailer.id}`, {
    grants: { channels: ["email"], templates: ["welcome"], recipients: ["*@example.com"] },
  });
  const run = await call("POST", `/v1/agents/${mailer.id}/runs?wait=true`, {
    input: { to: "ada@example.com", name: "ada" },
  });
  assert.equal(run.outcome?.status, "completed", JSON.stringify(run));

  await page.getByRole("link", { name: "Messages" }).click();
  await page.getByRole("heading", { name: "Message log" }).waitFor();
  const sent = page.getByRole("row").filter({ hasText: "ada@example.com" });
  await eventually(
    "the send in the message log",
    () => page.getByRole("button", { name: "Apply filters" }).click(),
    async () => (await sent.count()) === 1,
  );
  await sent.getByText("sent", { exact: true }).waitFor();
  assert.match((await sent.textContent()) ?? "", /email-bot.*email.*welcome/);
  // Filters: refused attempts are none; this agent's sent emails are it.
  await page.getByLabel("Status", { exact: true }).selectOption("refused");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText("No messages match.").waitFor();
  await page.getByLabel("Status", { exact: true }).selectOption("sent");
  await page.getByLabel("Channel", { exact: true }).selectOption("email");
  await page.getByLabel("Agent", { exact: true }).selectOption({ label: "email-bot" });
  const today = new Date().toISOString().slice(0, 10);
  await page.getByLabel("From", { exact: true }).fill(today);
  await page.getByLabel("To", { exact: true }).fill(today);
  await page.getByRole("button", { name: "Apply filters" }).click();
  await sent.waitFor();
  await page.screenshot({ path: join(shots, "messages.png"), fullPage: true });
  await page.getByLabel("Channel", { exact: true }).selectOption("sms");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText("No messages match.").waitFor();

  // Usage counts the send under its channel.
  await page.getByRole("link", { name: "Usage" }).click();
  const byChannel = page.locator("section", { has: page.getByRole("heading", { name: "Messages by channel" }) });
  await eventually(
    "the send in the usage by channel",
    () => page.getByRole("button", { name: "Show" }).click(),
    async () => (await byChannel.getByRole("row").filter({ hasText: "email" }).getByRole("cell").nth(1).textContent({ timeout: 1_000 }).catch(() => "")) === "1",
  );
  assert.deepEqual(problems, []);
  await page.close();
});

test("a member is invited, accepts, gets another role; the audit log shows it", async () => {
  // Bob has an account; the invitation is his to accept.
  const bob = { email: "bob@example.com", password: "a long enough password" };
  const registered = await fetch(`${url}/v1/auth/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(bob),
  });
  assert.ok(registered.ok, await registered.text());
  const { page, problems } = await signedInPage();
  await page.getByRole("link", { name: "Members" }).click();
  await page.getByRole("heading", { name: "Members and roles" }).waitFor();
  await page.getByLabel("Email", { exact: true }).fill(bob.email);
  await page.getByLabel("Role", { exact: true }).selectOption("member");
  await page.getByRole("button", { name: "Invite" }).click();
  await page.getByRole("status").filter({ hasText: `Invited ${bob.email} as member` }).waitFor();

  const login = await fetch(`${url}/v1/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(bob),
  });
  const bobToken = (await login.json()).access_token;
  const invitations = await callAs(bobToken, "", "GET", "/v1/invitations");
  assert.equal(invitations.items.length, 1, JSON.stringify(invitations));
  await callAs(bobToken, "", "POST", `/v1/invitations/${invitations.items[0].id}/accept`);

  // A member now; made an admin on the page.
  await page.getByRole("link", { name: "Agents", exact: true }).click();
  await page.getByRole("link", { name: "Members" }).click();
  const row = page.getByRole("row").filter({ hasText: bob.email });
  assert.equal(await page.getByLabel(`Role of ${bob.email}`).inputValue(), "member");
  await page.getByLabel(`Role of ${bob.email}`).selectOption("admin");
  await row.getByRole("button", { name: `Change role of ${bob.email}` }).click();
  await page.getByRole("status").filter({ hasText: `${bob.email} is now admin.` }).waitFor();
  assert.equal(await page.getByLabel(`Role of ${bob.email}`).inputValue(), "admin");
  const members = await call("GET", "/v1/tenants/current/members");
  assert.equal(members.items.find((/** @type {any} */ m) => m.email === bob.email)?.role, "admin");
  await page.screenshot({ path: join(shots, "members.png"), fullPage: true });

  // The audit log: the invitation, the acceptance and the role change, and
  // a filter that matches none of them.
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  await page.getByLabel("Action contains").fill("member_");
  await page.getByRole("button", { name: "Apply filters" }).click();
  for (const action of ["member_invited", "member_added"]) {
    await page.getByRole("cell", { name: action, exact: true }).first().waitFor();
  }
  const audit = await call("GET", "/v1/audit?limit=200");
  const changed = audit.items.find((/** @type {any} */ e) => e.action === "role_changed");
  assert.equal(changed?.detail?.to, "admin", JSON.stringify(audit.items));
  await page.getByLabel("Action contains").fill(changed.action);
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByRole("cell", { name: changed.action, exact: true }).first().waitFor();
  assert.equal(await page.getByRole("cell", { name: "member_invited", exact: true }).count(), 0);
  await page.screenshot({ path: join(shots, "audit.png"), fullPage: true });
  await page.getByLabel("Action contains").fill("no_such_action");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText("No audit entries match.").waitFor();

  // Removing takes two clicks.
  await page.getByRole("link", { name: "Members" }).click();
  await page.getByRole("button", { name: `Remove ${bob.email}` }).click();
  assert.equal((await call("GET", "/v1/tenants/current/members")).items.length, 2);
  await page.getByRole("button", { name: `Confirm removing ${bob.email}` }).click();
  await page.getByRole("status").filter({ hasText: `Removed ${bob.email}.` }).waitFor();
  assert.equal(await page.getByRole("row").filter({ hasText: bob.email }).count(), 0);
  assert.equal((await call("GET", "/v1/tenants/current/members")).items.length, 1);
  assert.deepEqual(problems, []);
  await page.close();
});

test("a bounty is created and funded, a submission approved, the payout in the balances", async () => {
  // The admin's tenant (default) is the business, topped up by the operator
  // (the admin is one); a second tenant of the admin's has the solving agent.
  assert.ok(verifierWasm);
  const access = await adminAccess();
  const me = await call("GET", "/v1/me");
  await callAs(access, "", "POST", "/v1/operator/ledger/topups", {
    tenant_id: me.tenant_id, amount_minor: 10_000, currency: "EUR",
  });
  const verifier = await call("POST", "/v1/components", verifierWasm);
  const solvers = await call("POST", "/v1/tenants", { name: "Solver shop" });
  const hello = (await call("GET", "/v1/agents")).items.find((/** @type {any} */ a) => a.name === "hello-agent");
  const bytes = readFileSync(join(process.env["DELTA_GUESTS"] ?? join(root, "target/guests"), "hello-agent.wasm"));
  await callAs(access, solvers.id, "POST", "/v1/components", bytes);
  const solver = await callAs(access, solvers.id, "POST", "/v1/agents", {
    name: "solver", kind: "main", component: hello.component,
  });

  const { page, problems } = await signedInPage();
  await page.getByRole("link", { name: "Bounties" }).click();
  await page.getByText("No bounties yet").waitFor();
  await page.getByText("No payouts yet.").waitFor();
  const balances = page.locator("#balances");
  await balances.getByText("€100.00").first().waitFor();
  await page.getByLabel("Title").fill("The answer");
  await page.getByLabel(/^Specification/).fill('{"expected": {"answer": 42}}');
  await page.getByLabel(/^Reward/).fill("1000");
  await page.getByLabel("Verifier component").selectOption(verifier.sha256);
  await page.getByRole("button", { name: "Create draft" }).click();
  await page.getByRole("status").filter({ hasText: "Created the draft The answer" }).waitFor();
  const row = page.getByRole("row").filter({ hasText: "The answer" });
  await row.getByText("draft", { exact: true }).waitFor();
  await row.getByRole("button", { name: "Fund The answer" }).click();
  await page.getByRole("status").filter({ hasText: "Funded The answer: €10.00 is held in escrow" }).waitFor();
  await row.getByText("open", { exact: true }).waitFor();
  // Held, not moved: the balance stays, what can be spent drops.
  const tenantAccount = balances.getByRole("row").filter({ hasText: "tenant" });
  assert.match((await tenantAccount.textContent()) ?? "", /€100\.00.*€90\.00.*€10\.00/);

  // The solver's agent submits a right answer (verified at once).
  // A second draft, cancelled: nothing was held for it.
  await page.getByLabel("Title").fill("Never mind");
  await page.getByLabel(/^Reward/).fill("500");
  await page.getByLabel("Verifier component").selectOption(verifier.sha256);
  await page.getByRole("button", { name: "Create draft" }).click();
  await page.getByRole("status").filter({ hasText: "Created the draft Never mind" }).waitFor();
  await page.getByRole("button", { name: "Cancel Never mind" }).click();
  await page.getByRole("status").filter({ hasText: "Cancelled Never mind." }).waitFor();
  await page.getByRole("row").filter({ hasText: "Never mind" }).getByText("cancelled", { exact: true }).waitFor();
  assert.match((await tenantAccount.textContent()) ?? "", /€100\.00.*€90\.00.*€10\.00/);

  const bounty = (await call("GET", "/v1/bounties?status=open")).items[0];
  const submission = await callAs(access, solvers.id, "POST", `/v1/bounties/${bounty.id}/submissions`, {
    agent_id: solver.id, payload: { answer: 42 },
  });
  assert.equal(submission.passed, true, JSON.stringify(submission));

  await page.getByRole("link", { name: "The answer" }).click();
  await page.getByRole("heading", { name: "Submissions" }).waitFor();
  const entry = page.getByRole("row").filter({ hasText: submission.id });
  await entry.getByText(/passed, score 1\.000/).waitFor();
  await page.screenshot({ path: join(shots, "bounty.png"), fullPage: true });
  await entry.getByRole("button", { name: `Approve ${submission.id}` }).click();
  await page.getByRole("status").filter({ hasText: "Approved: €10.00 paid out" }).waitFor();
  await entry.getByText("approved", { exact: true }).waitFor();

  // The payout: gone from the business's balance, listed, and in the
  // solver's balance (less the platform's fee).
  await page.getByRole("link", { name: "All bounties and balances" }).click();
  await page.getByRole("row").filter({ hasText: "The answer" }).getByText("completed", { exact: true }).first().waitFor();
  assert.match((await tenantAccount.textContent()) ?? "", /€90\.00.*€90\.00.*€0\.00/);
  const payout = page.getByRole("row").filter({ hasText: submission.id });
  assert.match((await payout.textContent()) ?? "", /The answer.*€10\.00/);
  await page.screenshot({ path: join(shots, "bounties.png"), fullPage: true });
  const paid = await callAs(access, solvers.id, "GET", "/v1/ledger/accounts");
  const credited = paid.items.find((/** @type {any} */ a) => a.kind === "tenant" && a.currency === "EUR");
  assert.ok(credited && credited.balance_minor > 0 && credited.balance_minor < 1_000, JSON.stringify(paid));
  await page.reload();
  await page.getByRole("link", { name: "Bounties" }).waitFor();
  await page.getByLabel("Tenant").selectOption({ label: "Solver shop" });
  await page.getByRole("status").filter({ hasText: "Now acting in Solver shop" }).waitFor();
  await balances.getByRole("row").filter({ hasText: "tenant" }).getByText(new RegExp(
    `€${(credited.balance_minor / 100).toFixed(2).replace(".", "\\.")}`,
  )).first().waitFor();
  assert.deepEqual(problems, []);
  await page.close();
});

test("long lists come a page at a time: More fetches the next", async () => {
  // 51 drafts: one more than a page of the templates list; with welcome and
  // promo, 53 template_created entries in the audit log.
  for (let i = 0; i < 51; i++) {
    await call("POST", "/v1/templates", { name: `bulk-${String(i).padStart(2, "0")}`, channel: "sms", body: `Note ${i}` });
  }
  const { page, problems } = await signedInPage();
  await page.getByRole("link", { name: "Templates" }).click();
  await page.getByLabel("Show").selectOption("draft");
  const templateRows = page.locator("#templates tbody tr");
  await page.locator("#templates").getByRole("button", { name: "More" }).waitFor();
  assert.equal(await templateRows.count(), 50);
  await page.locator("#templates").getByRole("button", { name: "More" }).click();
  await page.getByRole("row").filter({ hasText: "bulk-50" }).waitFor();
  assert.equal(await templateRows.count(), 51);
  assert.equal(await page.locator("#templates").getByRole("button", { name: "More" }).count(), 0);

  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByLabel("Action contains").fill("template_created");
  await page.getByRole("button", { name: "Apply filters" }).click();
  const auditRows = page.locator("#audit tbody tr");
  await page.locator("#audit").getByRole("button", { name: "More" }).waitFor({ timeout: 5_000 }).catch(async (error) => {
    throw new Error(`${error}\n${await auditRows.count()} rows; ${(await page.locator("main").textContent())?.slice(0, 600)}`);
  });
  assert.equal(await auditRows.count(), 50);
  await page.locator("#audit").getByRole("button", { name: "More" }).click();
  await page.getByRole("cell", { name: /"name":"welcome"/ }).waitFor();
  assert.equal(await auditRows.count(), 53);
  assert.equal(await page.locator("#audit").getByRole("button", { name: "More" }).count(), 0);
  // A period that ended before today: nothing.
  await page.getByLabel("To", { exact: true }).fill("2020-01-31");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText("No audit entries match.").waitFor();
  assert.deepEqual(problems, []);
  await page.close();
});

test("every page at a phone's width: no sideways scrolling, errors show their request id", async () => {
  const { page, problems } = await signedInPage();
  await page.setViewportSize({ width: 390, height: 844 });
  for (const name of ["Agents", "Token requests", "Usage", "Templates", "Messages", "Bounties", "Members", "Audit log", "API keys"]) {
    await page.getByRole("link", { name, exact: true }).click();
    await page.locator("main h1").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, `${name} scrolls sideways at a phone's width`);
  }
  // A bounty that does not exist: the error and its request id.
  await page.goto(`${url}/#/bounties/bty_missing`);
  await page.getByRole("alert").filter({ hasText: /not_found, request [0-9a-f]{8,}/ }).waitFor();
  assert.deepEqual(problems, []);
  await page.close();
});
