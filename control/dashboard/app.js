// Delta's dashboard: one ES module, no framework, typed with JSDoc and
// checked by `tsc --checkJs --strict` (control/dashboard/package.json).
//
// It speaks the same /v1 API as every client, with the signed-in user's own
// permissions. The access token lives in memory only; the refresh token in
// sessionStorage (it ends with the tab), never in a URL or localStorage.

/** @typedef {{ access: string, refresh: string, tenant: string }} Session */
/** @typedef {{ code?: string, message?: string, request_id?: string }} ErrorBody */

const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const statusLine = /** @type {HTMLElement} */ (document.getElementById("status"));
const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
const who = /** @type {HTMLElement} */ (document.getElementById("who"));
const signoutButton = /** @type {HTMLButtonElement} */ (document.getElementById("signout"));

/** @type {Session | null} */
let session = null;
/** The tenant acted in (`X-App-ID`); empty: the session's own. */
let app = "";
/** Cancels the live log of the view being left. */
let leaving = new AbortController();

class ApiError extends Error {
  /** @param {number} status @param {ErrorBody} body */
  constructor(status, body) {
    super(`${body.message ?? "request failed"} (${body.code ?? status}, request ${body.request_id ?? "?"})`);
    this.status = status;
    this.code = body.code ?? String(status);
  }
}

// ---- the API ---------------------------------------------------------------

/**
 * A call to the API as the signed-in user: JSON in and out, an
 * Idempotency-Key on mutations, one refresh on an expired access token.
 * @param {string} method @param {string} path @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = crypto.randomUUID();
  if (app) headers["X-App-ID"] = app;
  for (let attempt = 0; attempt < 2; attempt++) {
    if (session) headers["Authorization"] = `Bearer ${session.access}`;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && session && attempt === 0 && (await refresh())) continue;
    if (response.status === 401 && session) signOut("Your session ended: sign in again.");
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, data ?? {});
    return data;
  }
  throw new Error("unreachable");
}

/** @returns {Promise<boolean>} */
async function refresh() {
  if (!session) return false;
  const response = await fetch("/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: session.refresh }),
  });
  if (!response.ok) return false;
  const tokens = await response.json();
  keep({ access: tokens.access_token, refresh: tokens.refresh_token, tenant: tokens.tenant_id });
  return true;
}

/** @param {Session} next */
function keep(next) {
  session = next;
  sessionStorage.setItem("delta.refresh", next.refresh);
}

/** @param {string} [message] */
function signOut(message) {
  const ending = session;
  session = null;
  app = "";
  sessionStorage.removeItem("delta.refresh");
  if (ending) {
    fetch("/v1/auth/logout", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: ending.refresh }),
    }).catch(() => {});
  }
  nav.hidden = true;
  signoutButton.hidden = true;
  who.textContent = "";
  say(message ?? "");
  showSignIn();
}

// ---- helpers ---------------------------------------------------------------

/** @param {string} message */
function say(message) {
  statusLine.textContent = message;
}

/**
 * An element with attributes and children.
 * @param {string} tag @param {Record<string, string>} [attrs] @param {(Node | string)[]} [children]
 * @returns {HTMLElement}
 */
function h(tag, attrs = {}, children = []) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  for (const child of children) element.append(child);
  return element;
}

/**
 * A table, or the empty state when there are no rows.
 * @param {string[]} columns @param {(Node | string)[][]} rows @param {string} empty
 */
function table(columns, rows, empty) {
  if (rows.length === 0) return h("p", { class: "empty" }, [empty]);
  return h("table", {}, [
    h("thead", {}, [h("tr", {}, columns.map((c) => h("th", { scope: "col" }, [c])))]),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, [c]))))),
  ]);
}

/** @param {string} label @param {() => Promise<void>} action @param {string} [kind] */
function button(label, action, kind = "") {
  const b = /** @type {HTMLButtonElement} */ (h("button", { type: "button", class: kind }, [label]));
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await action();
    } catch (error) {
      say(error instanceof Error ? error.message : String(error));
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** @param {number} n */
const number = (n) => n.toLocaleString("en");

/** Every item of a list (follows next_cursor). @param {string} path @returns {Promise<any[]>} */
async function all(path) {
  const items = [];
  let cursor = "";
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    if (!page.next_cursor) return items;
    cursor = page.next_cursor;
  }
}

// ---- views -----------------------------------------------------------------

function showSignIn() {
  const template = /** @type {HTMLTemplateElement} */ (document.getElementById("signin-template"));
  main.replaceChildren(template.content.cloneNode(true));
  const form = /** @type {HTMLFormElement} */ (document.getElementById("signin"));
  const error = /** @type {HTMLElement} */ (document.getElementById("signin-error"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    const response = await fetch("/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: data.get("email"), password: data.get("password") }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      error.textContent = body.message ?? "Sign-in failed.";
      return;
    }
    keep({ access: body.access_token, refresh: body.refresh_token, tenant: body.tenant_id });
    await signedIn();
  });
  /** @type {HTMLInputElement} */ (document.getElementById("email")).focus();
}

async function signedIn() {
  const me = await api("GET", "/v1/me");
  const tenants = await all("/v1/tenants");
  who.replaceChildren(`${me.user.email} · ${me.role} in `, tenantSwitcher(tenants, me.tenant_id));
  nav.hidden = false;
  signoutButton.hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = "#/agents";
  else await route();
}

/**
 * The tenants the user belongs to; choosing one makes every request act in
 * it (`X-App-ID`), without signing in again.
 * @param {any[]} tenants @param {string} current
 */
function tenantSwitcher(tenants, current) {
  const select = /** @type {HTMLSelectElement} */ (
    h("select", { id: "tenant", "aria-label": "Tenant" },
      tenants.map((t) => h("option", { value: t.id }, [t.name])))
  );
  select.value = current;
  select.addEventListener("change", async () => {
    app = select.value;
    const me = await api("GET", "/v1/me");
    await route();
    // After the view: a route clears the status line.
    say(`Now acting in ${select.selectedOptions[0]?.textContent ?? app} as ${me.role}.`);
  });
  return select;
}

async function agentsView() {
  const agents = await all("/v1/agents");
  const rows = await Promise.all(
    agents.map(async (agent) => {
      const budget = await api("GET", `/v1/agents/${agent.id}/budget`).catch(() => null);
      return [
        h("a", { href: `#/agents/${agent.id}` }, [agent.name]),
        agent.kind,
        h("span", { class: `badge ${agent.paused ? "warn" : "ok"}` }, [agent.paused ? "paused" : "active"]),
        budget ? `${number(budget.spent)} / ${number(budget.allocated)}` : "—",
        h("span", { class: "actions" }, [
          agent.paused
            ? button("Resume", async () => { await api("POST", `/v1/agents/${agent.id}/resume`); await route(); }, "secondary")
            : button("Pause", async () => { await api("POST", `/v1/agents/${agent.id}/pause`); await route(); }, "secondary"),
        ]),
      ];
    }),
  );
  main.replaceChildren(
    h("section", { class: "card" }, [
      h("h1", {}, ["Agents and bots"]),
      table(["Name", "Kind", "State", "Tokens spent / allocated", "Actions"], rows, "No agents yet: deploy one with `delta agents create`."),
    ]),
  );
}

async function requestsView() {
  const pending = await all("/v1/token-requests?status=pending");
  const names = new Map((await all("/v1/agents")).map((agent) => [agent.id, agent.name]));
  const rows = await Promise.all(
    pending.map(async (request) => {
      const bot = await api("GET", `/v1/agents/${request.agent_id}/budget`).catch(() => null);
      return [
        h("a", { href: `#/agents/${request.agent_id}`, title: request.agent_id }, [
          names.get(request.agent_id) ?? request.agent_id,
        ]),
        h("span", { class: "num" }, [number(request.amount)]),
        request.reason || "—",
        bot ? `${number(bot.spent)} spent of ${number(bot.allocated)}` : "—",
        h("span", { class: "actions" }, [
          button("Approve", async () => {
            await api("POST", `/v1/token-requests/${request.id}/approve`);
            const after = await api("GET", `/v1/agents/${request.agent_id}/budget`);
            say(`Approved: the bot's budget is now ${number(after.allocated)} tokens.`);
            await requestsView();
          }),
          button("Deny", async () => {
            await api("POST", `/v1/token-requests/${request.id}/deny`);
            say("Denied.");
            await requestsView();
          }, "danger"),
        ]),
      ];
    }),
  );
  main.replaceChildren(
    h("section", { class: "card" }, [
      h("h1", {}, ["Pending token requests"]),
      table(["Bot", "Tokens asked", "Reason", "Spend so far", "Decision"], rows, "No requests are waiting."),
    ]),
  );
}

async function usageView() {
  const report = await api("GET", "/v1/usage?group_by=day");
  /** @type {Map<string, Map<string, number>>} kind -> day -> quantity */
  const byKind = new Map();
  /** @type {Set<string>} */
  const days = new Set();
  for (const row of report.rows) {
    if (!row.day) continue;
    days.add(row.day);
    const series = byKind.get(row.kind) ?? new Map();
    series.set(row.day, (series.get(row.day) ?? 0) + row.quantity);
    byKind.set(row.kind, series);
  }
  // Every day of the period, so that the axis spans it and quiet days are 0.
  /** @type {string[]} */
  const sortedDays = [];
  for (let t = Date.parse(`${report.from}T00:00:00Z`); t <= Date.parse(`${report.to}T00:00:00Z`); t += 86_400_000) {
    sortedDays.push(new Date(t).toISOString().slice(0, 10));
  }
  const totals = [...byKind.entries()].map(([kind, series]) => [
    kind,
    h("span", { class: "num" }, [number([...series.values()].reduce((a, b) => a + b, 0))]),
  ]);
  const chart = h("div", { class: "chart", id: "usage-chart", role: "img", "aria-label": "Runs per day" });
  main.replaceChildren(
    h("section", { class: "card" }, [h("h1", {}, [`Usage ${report.from} – ${report.to}`]), chart]),
    h("section", { class: "card" }, [h("h2", {}, ["Totals by kind"]), table(["Kind", "Quantity"], totals, "Nothing used in this period.")]),
  );
  if (days.size === 0) {
    chart.append(h("p", { class: "empty" }, ["No usage yet in this period."]));
    return;
  }
  // Runs and LLM tokens on one chart: the kinds people watch day to day.
  const shown = ["runs", "llm_input_tokens", "llm_output_tokens", "messages_sent"].filter((k) => byKind.has(k));
  const xs = sortedDays.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
  const data = [xs, ...shown.map((kind) => sortedDays.map((day) => byKind.get(kind)?.get(day) ?? 0))];
  const colors = ["#2a5bd7", "#1a7f37", "#b54708", "#7a2e98"];
  const uPlot = /** @type {any} */ (window).uPlot;
  new uPlot(
    {
      width: Math.min(chart.clientWidth || 640, 900),
      height: 260,
      series: [
        { label: "Day", value: (/** @type {unknown} */ _u, /** @type {number} */ v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 10)) },
        ...shown.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 2, points: { show: true } })),
      ],
      scales: { x: { time: true } },
      axes: [{ space: 60 }, {}],
    },
    data,
    chart,
  );
}

async function keysView() {
  const keys = await all("/v1/api-keys");
  const name = /** @type {HTMLInputElement} */ (
    h("input", { id: "key-name", name: "name", required: "", maxlength: "100", autocomplete: "off" })
  );
  const shown = h("div", { id: "new-key", "aria-live": "polite" });
  const form = h("form", { id: "key-form" }, [
    h("label", { for: "key-name" }, ["Name of a new key"]),
    name,
    h("button", { type: "submit" }, ["Create key"]),
  ]);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await api("POST", "/v1/api-keys", { name: name.value });
      await keysView();
      // Shown here once: the API never shows a key's secret again.
      const again = /** @type {HTMLElement} */ (document.getElementById("new-key"));
      again.replaceChildren(
        h("p", {}, [`Copy the key "${created.name}" now: it will not be shown again.`]),
        h("code", { id: "new-key-secret" }, [created.key]),
      );
    } catch (error) {
      say(error instanceof Error ? error.message : String(error));
    }
  });
  const rows = keys.map((key) => [
    key.name,
    h("code", {}, [key.prefix]),
    (key.scopes ?? []).join(", "),
    key.last_used_at_ms ? new Date(key.last_used_at_ms).toLocaleString() : "never",
    key.revoked_at_ms
      ? h("span", { class: "badge warn" }, ["revoked"])
      : button(`Revoke ${key.name}`, async () => {
          await api("DELETE", `/v1/api-keys/${key.id}`);
          say(`Revoked ${key.name}.`);
          await keysView();
        }, "danger"),
  ]);
  main.replaceChildren(
    h("section", { class: "card" }, [h("h1", {}, ["API keys"]), form, shown]),
    h("section", { class: "card" }, [
      table(["Name", "Prefix", "Scopes", "Last used", ""], rows, "No API keys."),
    ]),
  );
}

/** @param {string} agentId */
async function agentView(agentId) {
  const agent = await api("GET", `/v1/agents/${agentId}`);
  const runs = await api("GET", `/v1/runs?agent_id=${encodeURIComponent(agentId)}&limit=20`);
  const input = /** @type {HTMLTextAreaElement} */ (
    h("textarea", { id: "run-input", name: "input", rows: "3", spellcheck: "false" }, ["{}"])
  );
  const problem = h("p", { class: "error", role: "alert" });
  const form = h("form", { id: "run-form" }, [
    h("label", { for: "run-input" }, ["Input (JSON)"]),
    input,
    h("button", { type: "submit" }, ["Start run"]),
    problem,
  ]);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    let parsed;
    try {
      parsed = JSON.parse(input.value);
    } catch {
      problem.textContent = "The input is not JSON.";
      return;
    }
    try {
      const run = await api("POST", `/v1/agents/${agentId}/runs`, { input: parsed });
      location.hash = `#/runs/${run.id}`;
    } catch (error) {
      problem.textContent = error instanceof Error ? error.message : String(error);
    }
  });
  main.replaceChildren(
    h("section", { class: "card" }, [
      h("h1", {}, [agent.name]),
      h("p", {}, [`${agent.kind} on ${agent.node_id ?? "no node"}, component ${agent.component.slice(0, 12)}…`]),
      form,
    ]),
    h("section", { class: "card" }, [
      h("h2", {}, ["Recent runs"]),
      table(
        ["Run", "Status", "Started"],
        runs.items.map((/** @type {any} */ run) => [
          h("a", { href: `#/runs/${run.id}` }, [run.id]),
          run.status,
          new Date(run.created_at_ms).toLocaleString(),
        ]),
        "No runs yet.",
      ),
    ]),
  );
}

/** A run's log, live (fetch streams: EventSource cannot send a bearer token). @param {string} runId */
async function runView(runId) {
  const log = h("pre", { class: "log", id: "run-log", "aria-live": "polite" });
  const state = h("p", { id: "run-state" }, ["Following the log…"]);
  main.replaceChildren(h("section", { class: "card" }, [h("h1", {}, [`Run ${runId}`]), state, log]));
  const signal = leaving.signal;
  const response = await fetch(`/v1/runs/${runId}/logs`, {
    headers: { Authorization: `Bearer ${session?.access ?? ""}` },
    signal,
  });
  if (!response.ok || !response.body) {
    state.textContent = `The log is not available (${response.status}).`;
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let event = "message";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) {
          const data = line.slice(5).trim();
          if (event === "end") {
            const end = JSON.parse(data);
            state.textContent = `Finished: ${end.outcome?.status ?? end.status}`;
            log.append(`— ${JSON.stringify(end.outcome ?? end)}\n`);
          } else {
            const parsed = JSON.parse(data);
            log.append(`${parsed.level ?? ""} ${parsed.message ?? data}\n`);
          }
        } else if (line === "") event = "message";
      }
    }
  } catch (error) {
    if (!signal.aborted) state.textContent = `The log stream broke: ${error}`;
  }
}

// ---- routing ---------------------------------------------------------------

async function route() {
  leaving.abort();
  leaving = new AbortController();
  if (!session) return showSignIn();
  const hash = location.hash || "#/agents";
  for (const link of nav.querySelectorAll("a")) {
    if (hash.startsWith(link.getAttribute("href") ?? "")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  try {
    const [, view, id] = hash.split("/");
    if (view === "requests") await requestsView();
    else if (view === "usage") await usageView();
    else if (view === "keys") await keysView();
    else if (view === "runs" && id) await runView(id);
    else if (view === "agents" && id) await agentView(id);
    else await agentsView();
  } catch (error) {
    main.replaceChildren(h("section", { class: "card" }, [h("p", { class: "error", role: "alert" }, [
      error instanceof Error ? error.message : String(error),
    ])]));
  }
}

window.addEventListener("hashchange", () => void route());
signoutButton.addEventListener("click", () => signOut("Signed out."));

// A reload in the same tab keeps the session (the refresh token is in
// sessionStorage); a new tab signs in again.
const saved = sessionStorage.getItem("delta.refresh");
if (saved) {
  session = { access: "", refresh: saved, tenant: "" };
  refresh().then((ok) => (ok ? signedIn() : signOut()), () => signOut());
} else {
  showSignIn();
}
