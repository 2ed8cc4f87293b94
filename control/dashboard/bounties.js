// Bounties: the tenant's bounties (create a draft, fund it into escrow,
// cancel), a bounty's submissions with their verdicts (approve, reject,
// verify again), the ledger balances and the payouts made.

import {
  all, api, badge, button, card, field, form, h, input, main, money, paged, route, say, select, table, when, withQuery,
} from "./core.js";

/** The status shown, kept while the user moves between pages. */
let bountyStatus = "";

/** @param {string} status */
const statusBadge = (status) =>
  badge(status, ["open", "completed", "approved"].includes(status) ? "ok" : ["cancelled", "expired", "rejected"].includes(status) ? "warn" : "");

export async function bountiesView() {
  const status = select("bounty-status", [
    ["", "Any status"], ["draft", "Drafts"], ["open", "Open"], ["completed", "Completed"], ["cancelled", "Cancelled"], ["expired", "Expired"],
  ]);
  status.value = bountyStatus;
  status.addEventListener("change", () => {
    bountyStatus = status.value;
    void bountiesView();
  });
  const list = await paged(
    (cursor) => api("GET", withQuery("/v1/bounties", { status: bountyStatus, limit: 50, cursor })),
    ["Title", "#Reward", "Status", "Deadline", "Policy", "Actions"],
    bountyRow,
    bountyStatus ? `No ${bountyStatus} bounties.` : "No bounties yet: create one below.",
    "bounties",
  );
  const [accounts, completed, components] = await Promise.all([
    api("GET", "/v1/ledger/accounts"),
    all("/v1/bounties?status=completed"),
    all("/v1/components").catch(() => []),
  ]);

  const balances = table(
    ["Account", "Currency", "#Balance", "#Available", "#Held for bounties"],
    accounts.items.map((/** @type {any} */ a) => [
      a.kind,
      a.currency,
      money(a.balance_minor, a.currency),
      money(a.available_minor, a.currency),
      money(a.debits_pending, a.currency),
    ]),
    "No balance yet: an operator tops the tenant's account up.",
  );
  const payouts = table(
    ["Bounty", "#Reward paid", "Submission", "Completed"],
    completed.map((b) => [
      h("a", { href: `#/bounties/${b.id}` }, [b.title]),
      money(b.reward_minor, b.currency),
      b.approved_submission_id ? h("code", { class: "clip" }, [b.approved_submission_id]) : "—",
      when(b.updated_at_ms),
    ]),
    "No payouts yet.",
  );
  main().replaceChildren(
    card("Bounties", [field("Show", status), list]),
    h("div", { class: "columns" }, [
      card("Balances", [h("div", { id: "balances" }, [balances])], "h2"),
      card("Payouts", [payouts], "h2"),
    ]),
    card("New bounty", [newBounty(components)], "h2"),
  );
}

/** @param {any} b */
function bountyRow(b) {
  const actions = [];
  if (b.status === "draft") {
    actions.push(button(`Fund ${b.title}`, async () => {
      await api("POST", `/v1/bounties/${b.id}/fund`);
      await route();
      say(`Funded ${b.title}: ${money(b.reward_minor, b.currency)} is held in escrow and the bounty is open.`);
    }));
  }
  if (b.status === "draft" || b.status === "open") {
    actions.push(button(`Cancel ${b.title}`, async () => {
      await api("POST", `/v1/bounties/${b.id}/cancel`);
      await route();
      say(`Cancelled ${b.title}.`);
    }, "danger"));
  }
  return [
    h("a", { href: `#/bounties/${b.id}` }, [b.title]),
    money(b.reward_minor, b.currency),
    statusBadge(b.status),
    when(b.deadline_ms),
    b.policy,
    h("span", { class: "actions" }, actions),
  ];
}

/** @param {any[]} components the tenant's uploads (verifiers among them) */
function newBounty(components) {
  const title = input("bounty-title", { required: "", maxlength: "200", autocomplete: "off" });
  const description = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "bounty-description", rows: "2" }));
  const spec = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "bounty-spec", rows: "3", spellcheck: "false", required: "" }, ['{"expected": {}}']));
  const reward = input("bounty-reward", { type: "number", min: "1", step: "1", required: "", inputmode: "numeric" });
  const currency = input("bounty-currency", { required: "", pattern: "[A-Z]{3}", value: "EUR", maxlength: "3" });
  const deadline = input("bounty-deadline", { type: "date", required: "" });
  deadline.value = new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 10);
  // Agents cannot verify: offer what is a verifier or not yet checked.
  const verifier = select("bounty-verifier", components
    .filter((c) => c.world !== "agent")
    .map((c) => /** @type {[string, string]} */ ([c.sha256, `${c.sha256.slice(0, 12)}… (${c.world}, ${when(c.created_at_ms)})`])));
  const policy = select("bounty-policy", [["manual", "Manual: I approve the winner"], ["auto", "Automatic: the first passing submission wins"]]);
  return form("bounty-form", [
    field("Title", title),
    field("Description", description),
    field("Specification (JSON, handed to the verifier)", spec),
    h("div", { class: "row" }, [
      field("Reward (minor units, e.g. cents)", reward),
      field("Currency", currency),
      field("Deadline (end of day, UTC)", deadline),
    ]),
    field("Verifier component", verifier, components.length ? undefined : "Upload a verifier component first (delta components upload)."),
    field("Approval", policy),
  ], "Create draft", async () => {
    let parsedSpec;
    try {
      parsedSpec = JSON.parse(spec.value);
    } catch {
      throw new Error("The specification is not JSON.");
    }
    if (!/^[0-9]+$/.test(reward.value)) throw new Error("The reward is a whole number of minor units.");
    const created = await api("POST", "/v1/bounties", {
      title: title.value,
      description: description.value,
      spec: parsedSpec,
      reward_minor: Number(reward.value),
      currency: currency.value,
      deadline_ms: Date.parse(`${deadline.value}T23:59:59Z`),
      verifier: verifier.value,
      policy: policy.value,
    });
    await bountiesView();
    say(`Created the draft ${created.title}: fund it to open it.`);
  });
}

/** A bounty and its submissions, with their verdicts. @param {string} id */
export async function bountyView(id) {
  const bounty = await api("GET", `/v1/bounties/${id}`);
  const agents = new Map((await all("/v1/agents")).map((a) => [a.id, a.name]));
  const decidable = bounty.status === "open";
  const list = await paged(
    (cursor) => api("GET", withQuery(`/v1/bounties/${id}/submissions`, { limit: 50, cursor })),
    ["Submission", "Agent", "Status", "Verdict", "Submitted", "Decision"],
    (s) => {
      const actions = [];
      if (decidable && s.status === "verified" && s.passed) {
        actions.push(button(`Approve ${s.id}`, async () => {
          const done = await api("POST", `/v1/submissions/${s.id}/approve`);
          await bountyView(id);
          say(`Approved: ${money(done.reward_minor, done.currency)} paid out (less the platform fee); the bounty is ${done.status}.`);
        }));
      }
      if (decidable && !["approved", "rejected"].includes(s.status)) {
        actions.push(button(`Reject ${s.id}`, async () => {
          await api("POST", `/v1/submissions/${s.id}/reject`);
          await bountyView(id);
          say(`Rejected ${s.id}.`);
        }, "danger"));
      }
      if (decidable && s.status !== "verified" && !["approved", "rejected"].includes(s.status)) {
        actions.push(button(`Verify ${s.id} again`, async () => {
          await api("POST", `/v1/submissions/${s.id}/verify`);
          await bountyView(id);
        }, "secondary"));
      }
      return [
        h("code", {}, [s.id]),
        agents.get(s.agent_id) ?? s.agent_id,
        statusBadge(s.status),
        s.passed === null || s.passed === undefined
          ? "not yet"
          : `${s.passed ? "passed" : "failed"}${s.score_milli == null ? "" : `, score ${(s.score_milli / 1000).toFixed(3)}`}`,
        when(s.created_at_ms),
        h("span", { class: "actions" }, actions),
      ];
    },
    "No submissions yet.",
    "submissions",
  );
  main().replaceChildren(
    card(bounty.title, [
      h("p", {}, [statusBadge(bounty.status), ` ${money(bounty.reward_minor, bounty.currency)}, deadline ${when(bounty.deadline_ms)}, ${bounty.policy} approval.`]),
      ...(bounty.description ? [h("p", {}, [bounty.description])] : []),
      h("pre", { class: "spec" }, [JSON.stringify(bounty.spec, null, 2)]),
      h("p", {}, [h("a", { href: "#/bounties" }, ["All bounties and balances"])]),
    ]),
    card("Submissions", [list], "h2"),
  );
}
