// Agents and bots as a budget tree, an agent's page (start a run), a run's
// live log, and bots' token requests.

import { all, api, badge, button, card, ctx, h, main, number, route, say, table, when } from "./core.js";

/**
 * The user → main agent → bot tree with each one's allocation, spend and
 * what remains, and the user's reserve pool (what no agent holds yet).
 */
export async function agentsView() {
  const agents = await all("/v1/agents");
  const mine = await api("GET", "/v1/budget").catch(() => null);
  /** @type {Map<string, any>} agent id -> its budget account (none: null) */
  const budgets = new Map(
    await Promise.all(
      agents.map(async (agent) => /** @type {[string, any]} */ ([agent.id, await api("GET", `/v1/agents/${agent.id}/budget`).catch(() => null)])),
    ),
  );
  /** @type {Map<string, any[]>} main agent id -> its bots */
  const bots = new Map();
  for (const agent of agents) {
    if (agent.kind === "bot" && agent.parent_agent_id) {
      bots.set(agent.parent_agent_id, [...(bots.get(agent.parent_agent_id) ?? []), agent]);
    }
  }
  const ids = new Set(agents.map((a) => a.id));
  // Mains, and bots whose main is gone, at the top of the tree.
  const roots = agents.filter((a) => a.kind !== "bot" || !ids.has(a.parent_agent_id));
  /** @type {Map<string, any[]>} user id ("" unknown) -> their root agents */
  const byUser = new Map();
  for (const agent of roots) {
    const user = budgets.get(agent.id)?.user_id ?? "";
    byUser.set(user, [...(byUser.get(user) ?? []), agent]);
  }

  /** @type {(Node | string)[][]} */
  const rows = [];
  /** @param {any} agent @param {number} level */
  const agentRow = (agent, level) => {
    const budget = budgets.get(agent.id);
    rows.push([
      h("span", { class: `level-${level}` }, [
        ...(level > 1 ? [h("span", { "aria-hidden": "true" }, ["↳ "])] : []),
        h("a", { href: `#/agents/${agent.id}` }, [agent.name]),
      ]),
      agent.kind,
      badge(agent.paused ? "paused" : "active", agent.paused ? "warn" : "ok"),
      budget ? number(budget.allocated) : "—",
      budget ? number(budget.spent) : "—",
      budget ? number(budget.available) : "—",
      h("span", { class: "actions" }, [
        agent.paused
          ? button(`Resume ${agent.name}`, async () => { await api("POST", `/v1/agents/${agent.id}/resume`); await route(); }, "secondary")
          : button(`Pause ${agent.name}`, async () => { await api("POST", `/v1/agents/${agent.id}/pause`); await route(); }, "secondary"),
      ]),
    ]);
    for (const bot of bots.get(agent.id) ?? []) agentRow(bot, level + 1);
  };
  const users = [...byUser.keys()].sort((a, b) => (a === mine?.user_id ? -1 : b === mine?.user_id ? 1 : a.localeCompare(b)));
  if (mine && !byUser.has(mine.user_id)) users.unshift(mine.user_id);
  for (const user of users) {
    const budget = user === mine?.user_id ? mine : null;
    // What the user's agents (mains and bots) spent, and agents since deleted.
    const spent = [...budgets.values()]
      .filter((b) => b && b.user_id === user)
      .reduce((sum, b) => sum + b.spent, budget?.retired ?? 0);
    rows.push([
      h("strong", {}, [user === mine?.user_id ? "You" : user ? `User ${user}` : "No budget account"]),
      budget ? `user, ${budget.tier} tier` : "user",
      budget ? `period ${budget.period}` : "",
      budget ? number(budget.monthly_allocation) : "—",
      budget ? number(spent) : "—",
      budget ? h("span", { title: "Reserve pool: allocated to no agent yet" }, [`${number(budget.pool)} in reserve`]) : "—",
      "",
    ]);
    for (const agent of byUser.get(user) ?? []) agentRow(agent, 1);
  }
  const tree = agents.length === 0
    ? h("p", { class: "empty" }, ["No agents yet: deploy one with `delta agents create`."])
    : table(
        ["Name", "Kind", "State", "#Allocated", "#Spent", "#Remaining", "Actions"],
        rows,
        "",
        "Budgets this period, in tokens: each user's monthly allocation and reserve pool, their main agents, and each main agent's bots",
      );
  main().replaceChildren(card("Agents and bots", [tree]));
}

/** @param {string} agentId */
export async function agentView(agentId) {
  const agent = await api("GET", `/v1/agents/${agentId}`);
  const runs = await api("GET", `/v1/runs?agent_id=${encodeURIComponent(agentId)}&limit=20`);
  const budget = await api("GET", `/v1/agents/${agentId}/budget`).catch(() => null);
  const deployments = await api("GET", `/v1/agents/${agentId}/deployments?limit=20`);
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
  main().replaceChildren(
    card(agent.name, [
      h("p", {}, [`${agent.kind} on ${agent.node_id ?? "no node"}, component ${agent.component.slice(0, 12)}…, updated ${when(agent.updated_at_ms)}`]),
      h("p", {}, [
        budget
          ? `Budget ${budget.period}: ${number(budget.allocated)} allocated, ${number(budget.spent)} spent, ${number(budget.available)} remaining.`
          : "No budget account.",
      ]),
      form,
    ]),
    card("Recent runs", [
      table(
        ["Run", "Status", "Started"],
        runs.items.map((/** @type {any} */ run) => [
          h("a", { href: `#/runs/${run.id}` }, [run.id]),
          run.status,
          when(run.created_at_ms),
        ]),
        "No runs yet.",
      ),
    ], "h2"),
    card("Deploy history", [
      table(
        ["When", "Why", "Component", "Node", "Fuel"],
        deployments.items.map((/** @type {any} */ d) => [
          when(d.at_ms),
          d.reason,
          `${d.component.slice(0, 12)}…`,
          d.node_id ?? "none",
          d.limits?.fuel == null ? "default" : number(d.limits.fuel),
        ]),
        "No deployments recorded.",
        "Deployments, newest first",
      ),
    ], "h2"),
  );
}

/** A run's log, live (fetch streams: EventSource cannot send a bearer token). @param {string} runId */
export async function runView(runId) {
  const log = h("pre", { class: "log", id: "run-log", "aria-live": "polite" });
  const state = h("p", { id: "run-state" }, ["Following the log…"]);
  main().replaceChildren(card(`Run ${runId}`, [state, log]));
  const signal = ctx.leaving.signal;
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${ctx.session?.access ?? ""}` };
  if (ctx.app) headers["X-App-ID"] = ctx.app;
  const response = await fetch(`/v1/runs/${runId}/logs`, { headers, signal });
  if (!response.ok || !response.body) {
    const body = await response.json().catch(() => ({}));
    state.textContent = `The log is not available (${response.status}, request ${body.request_id ?? "?"}).`;
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

/** Pending token requests, each with the bot's spend so far. */
export async function requestsView() {
  const pending = await all("/v1/token-requests?status=pending");
  const names = new Map((await all("/v1/agents")).map((agent) => [agent.id, agent.name]));
  const rows = await Promise.all(
    pending.map(async (request) => {
      const bot = await api("GET", `/v1/agents/${request.agent_id}/budget`).catch(() => null);
      return [
        h("a", { href: `#/agents/${request.agent_id}`, title: request.agent_id }, [
          names.get(request.agent_id) ?? request.agent_id,
        ]),
        number(request.amount),
        request.reason || "—",
        bot ? `${number(bot.spent)} spent of ${number(bot.allocated)} (${number(bot.available)} left)` : "—",
        when(request.created_at_ms),
        h("span", { class: "actions" }, [
          button("Approve", async () => {
            await api("POST", `/v1/token-requests/${request.id}/approve`);
            const after = await api("GET", `/v1/agents/${request.agent_id}/budget`);
            await requestsView();
            say(`Approved: the bot's budget is now ${number(after.allocated)} tokens.`);
          }),
          button("Deny", async () => {
            await api("POST", `/v1/token-requests/${request.id}/deny`);
            await requestsView();
            say("Denied.");
          }, "danger"),
        ]),
      ];
    }),
  );
  main().replaceChildren(
    card("Pending token requests", [
      table(["Bot", "#Tokens asked", "Reason", "Spend so far", "Asked", "Decision"], rows, "No requests are waiting."),
    ]),
  );
}
