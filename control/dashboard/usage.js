// Usage: per day (a chart and a table) and per agent; tokens by model,
// messages by channel, fuel and runs; the remaining budget alongside.

import { all, api, card, field, form, h, input, main, number, select, table, withQuery } from "./core.js";

/** The filter, kept while the user moves between pages. */
const filter = { from: "", to: "", agent: "" };

/** The columns of the per-day and per-agent tables: [label, kinds summed]. */
const COLUMNS = /** @type {[string, string[]][]} */ ([
  ["Runs", ["runs"]],
  ["Fuel", ["fuel"]],
  ["LLM tokens", ["llm_input_tokens", "llm_output_tokens"]],
  ["Messages sent", ["messages_sent"]],
  ["Message tokens", ["message_tokens"]],
]);

/**
 * Sum of `rows` per key and kind.
 * @param {any[]} rows @param {(row: any) => string} key
 * @returns {Map<string, Map<string, number>>}
 */
function sums(rows, key) {
  const out = new Map();
  for (const row of rows) {
    const k = key(row);
    const byKind = out.get(k) ?? new Map();
    byKind.set(row.kind, (byKind.get(row.kind) ?? 0) + row.quantity);
    out.set(k, byKind);
  }
  return out;
}

/** @param {Map<string, number> | undefined} kinds @param {string[]} wanted */
const total = (kinds, wanted) => wanted.reduce((sum, kind) => sum + (kinds?.get(kind) ?? 0), 0);

export async function usageView() {
  const agents = await all("/v1/agents");
  const names = new Map(agents.map((a) => [a.id, a.name]));
  // An agent of the tenant acted in before a switch is not one of these.
  if (!names.has(filter.agent)) filter.agent = "";
  const query = { from: filter.from, to: filter.to, agent_id: filter.agent };
  const byDay = await api("GET", withQuery("/v1/usage", { ...query, group_by: "day" }));
  const byAgent = await api("GET", withQuery("/v1/usage", { ...query, group_by: "agent" }));

  const from = input("usage-from", { type: "date", value: filter.from || byDay.from });
  const to = input("usage-to", { type: "date", value: filter.to || byDay.to });
  const agent = select("usage-agent", [["", "All agents"], ...agents.map((a) => /** @type {[string, string]} */ ([a.id, a.name]))]);
  agent.value = filter.agent;
  const filters = form("usage-filter", [
    h("div", { class: "row" }, [field("From", from), field("To", to), field("Agent", agent)]),
  ], "Show", async () => {
    filter.from = from.value;
    filter.to = to.value;
    filter.agent = agent.value;
    await usageView();
  });

  const chart = h("div", { class: "chart", id: "usage-chart", role: "img", "aria-label": "Runs, LLM tokens and messages per day" });
  const days = sums(byDay.rows.filter((/** @type {any} */ r) => r.day), (r) => r.day);
  const perAgent = sums(byAgent.rows, (r) => r.agent_id ?? "");
  const models = sums(byAgent.rows.filter((/** @type {any} */ r) => r.kind.startsWith("llm_")), (r) => r.detail || "(unknown)");
  const channels = sums(byAgent.rows.filter((/** @type {any} */ r) => r.kind.startsWith("message")), (r) => r.detail || "(unknown)");

  const numbers = (/** @type {Map<string, number> | undefined} */ kinds) => COLUMNS.map(([, wanted]) => number(total(kinds, wanted)));
  main().replaceChildren(
    card(`Usage ${byDay.from} – ${byDay.to}`, [filters, remaining(byDay.budget, filter.agent ? names.get(filter.agent) ?? filter.agent : ""), chart]),
    card("Per day", [
      table(["Day", ...COLUMNS.map(([label]) => `#${label}`)],
        [...days.keys()].sort().map((day) => [day, ...numbers(days.get(day))]),
        "Nothing used in this period."),
    ], "h2"),
    card("Per agent", [
      table(["Agent", ...COLUMNS.map(([label]) => `#${label}`)],
        [...perAgent.keys()].map((id) => [
          id ? h("a", { href: `#/agents/${id}` }, [names.get(id) ?? id]) : "—",
          ...numbers(perAgent.get(id)),
        ]),
        "Nothing used in this period."),
    ], "h2"),
    h("div", { class: "columns" }, [
      card("Tokens by model", [
        table(["Model", "#Input tokens", "#Output tokens", "#Calls"],
          [...models.entries()].map(([model, kinds]) => [
            model,
            number(total(kinds, ["llm_input_tokens"])),
            number(total(kinds, ["llm_output_tokens"])),
            number(total(kinds, ["llm_calls"])),
          ]),
          "No LLM calls in this period."),
      ], "h2"),
      card("Messages by channel", [
        table(["Channel", "#Sent", "#Refused", "#Tokens"],
          [...channels.entries()].map(([channel, kinds]) => [
            channel,
            number(total(kinds, ["messages_sent"])),
            number(total(kinds, ["messages_refused"])),
            number(total(kinds, ["message_tokens"])),
          ]),
          "No messages in this period."),
      ], "h2"),
    ]),
  );
  if (days.size === 0) {
    chart.append(h("p", { class: "empty" }, ["No usage yet in this period."]));
    return;
  }
  drawChart(chart, byDay, days);
}

/**
 * What remains of the budget the report came with (an agent's, or the
 * caller's own).
 * @param {any} budget @param {string} agentName
 */
function remaining(budget, agentName) {
  if (!budget) return h("p", { id: "usage-budget" }, ["No budget account to show."]);
  const text = agentName
    ? `${agentName}: ${number(budget.available)} tokens remaining of ${number(budget.allocated)} (${number(budget.spent)} spent, period ${budget.period}).`
    : `Your budget ${budget.period}: ${number(budget.monthly_allocation)} tokens a month, ${number(budget.allocated)} allocated to agents, ${number(budget.pool)} remaining in reserve.`;
  return h("p", { id: "usage-budget" }, [text]);
}

/**
 * Runs, LLM tokens and messages per day on one chart: the kinds people
 * watch day to day; every day of the period is on the axis, quiet days 0.
 * @param {HTMLElement} chart @param {any} report @param {Map<string, Map<string, number>>} days
 */
function drawChart(chart, report, days) {
  /** @type {string[]} */
  const sortedDays = [];
  for (let t = Date.parse(`${report.from}T00:00:00Z`); t <= Date.parse(`${report.to}T00:00:00Z`); t += 86_400_000) {
    sortedDays.push(new Date(t).toISOString().slice(0, 10));
  }
  const present = new Set([...days.values()].flatMap((kinds) => [...kinds.keys()]));
  const shown = ["runs", "llm_input_tokens", "llm_output_tokens", "messages_sent"].filter((k) => present.has(k));
  const xs = sortedDays.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
  const data = [xs, ...shown.map((kind) => sortedDays.map((day) => days.get(day)?.get(kind) ?? 0))];
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
