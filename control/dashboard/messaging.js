// Message templates (list by status, create, approve, reject with a reason)
// and the message audit log (every send attempt, filtered, a page at a time).

import {
  all, api, badge, button, card, dayStartMs, field, form, h, input, main, number, paged, say, select, when, withQuery,
} from "./core.js";

/** The status shown, kept while the user moves between pages. */
let templateStatus = "";

/** @param {string} status */
const statusBadge = (status) => badge(status, status === "approved" ? "ok" : status === "rejected" ? "warn" : "");

export async function templatesView() {
  const status = select("template-status", [["", "Any status"], ["draft", "Drafts (waiting for review)"], ["approved", "Approved"], ["rejected", "Rejected"]]);
  status.value = templateStatus;
  status.addEventListener("change", () => {
    templateStatus = status.value;
    void templatesView();
  });
  const list = await paged(
    (cursor) => api("GET", withQuery("/v1/templates", { status: templateStatus, limit: 50, cursor })),
    ["Name", "Channel", "Status", "#Version", "Text", "Review"],
    templateRow,
    templateStatus ? `No ${templateStatus} templates.` : "No templates yet: create one above.",
    "templates",
  );

  const name = input("template-name", { required: "", maxlength: "100", autocomplete: "off" });
  const channel = select("template-channel", [["email", "Email"], ["sms", "SMS"]]);
  const subject = input("template-subject", { maxlength: "200", autocomplete: "off" });
  const body = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "template-body", name: "body", rows: "4", required: "" }));
  const variables = input("template-variables", { autocomplete: "off", value: "{}", spellcheck: "false" });
  const create = form("template-form", [
    field("Name", name, "Agents name the template by this."),
    field("Channel", channel),
    field("Subject (email)", subject),
    field("Body", body, "Variables as {{ name }}."),
    field("Variables (JSON: name → maximum length)", variables, 'For example {"name": 32}.'),
  ], "Create template", async () => {
    let vars;
    try {
      vars = JSON.parse(variables.value || "{}");
    } catch {
      throw new Error("The variables are not JSON.");
    }
    const created = await api("POST", "/v1/templates", {
      name: name.value,
      channel: channel.value,
      body: body.value,
      variables: vars,
      ...(subject.value ? { subject: subject.value } : {}),
    });
    await templatesView();
    say(`Created ${created.name} (draft): an admin approves it before agents can send it.`);
  });

  main().replaceChildren(
    card("Message templates", [field("Show", status), list]),
    card("New template", [create], "h2"),
  );
}

/** @param {any} t */
function templateRow(t) {
  const reason = input(`reject-${t.id}`, { maxlength: "1000", placeholder: "Reason (optional)", "aria-label": `Reason for rejecting ${t.name}` });
  const review = [];
  if (t.status !== "approved") {
    review.push(button(`Approve ${t.name}`, async () => {
      await api("POST", `/v1/templates/${t.id}/approve`, { version: t.version });
      await templatesView();
      say(`Approved ${t.name}: agents granted it may send it now.`);
    }));
  }
  if (t.status !== "rejected") {
    review.push(reason, button(`Reject ${t.name}`, async () => {
      await api("POST", `/v1/templates/${t.id}/reject`, { version: t.version, ...(reason.value ? { reason: reason.value } : {}) });
      await templatesView();
      say(`Rejected ${t.name}.`);
    }, "danger"));
  }
  return [
    t.name,
    t.channel,
    h("span", {}, [
      statusBadge(t.status),
      ...(t.status === "rejected" && t.rejection_reason ? [" ", h("span", { class: "muted" }, [t.rejection_reason])] : []),
    ]),
    String(t.version),
    h("span", { class: "clip" }, [t.subject ? `${t.subject} — ${t.body}` : t.body]),
    h("span", { class: "actions" }, review),
  ];
}

/** The message log's filter, kept while the user moves between pages. */
const messageFilter = { channel: "", status: "", agent: "", from: "", to: "" };

export async function messagesView() {
  const agents = await all("/v1/agents");
  const names = new Map(agents.map((a) => [a.id, a.name]));
  // An agent of the tenant acted in before a switch is not one of these.
  if (!names.has(messageFilter.agent)) messageFilter.agent = "";
  const channel = select("message-channel", [["", "Any channel"], ["email", "Email"], ["sms", "SMS"]]);
  const status = select("message-status", [["", "Any status"], ["sent", "Sent"], ["refused", "Refused"], ["failed", "Failed"]]);
  const agent = select("message-agent", [["", "All agents"], ...agents.map((a) => /** @type {[string, string]} */ ([a.id, a.name]))]);
  const from = input("message-from", { type: "date" });
  const to = input("message-to", { type: "date" });
  channel.value = messageFilter.channel;
  status.value = messageFilter.status;
  agent.value = messageFilter.agent;
  from.value = messageFilter.from;
  to.value = messageFilter.to;
  const filters = form("message-filter", [
    h("div", { class: "row" }, [field("Channel", channel), field("Status", status), field("Agent", agent), field("From", from), field("To", to)]),
  ], "Apply filters", async () => {
    Object.assign(messageFilter, { channel: channel.value, status: status.value, agent: agent.value, from: from.value, to: to.value });
    await messagesView();
  });
  const until = dayStartMs(messageFilter.to);
  const list = await paged(
    (cursor) => api("GET", withQuery("/v1/messages", {
      channel: messageFilter.channel,
      status: messageFilter.status,
      agent_id: messageFilter.agent,
      since_ms: dayStartMs(messageFilter.from),
      // The "to" day is included.
      until_ms: until === undefined ? undefined : until + 86_400_000,
      limit: 50,
      cursor,
    })),
    ["When", "Agent", "Channel", "Template", "Recipient", "Status", "#Tokens", "Run"],
    (m) => [
      when(m.at_ms),
      names.get(m.agent_id) ?? m.agent_id,
      m.channel,
      m.template_id,
      m.recipient,
      h("span", {}, [
        badge(m.status, m.status === "sent" ? "ok" : "warn"),
        ...(m.reason ? [" ", h("span", { class: "muted" }, [m.reason])] : []),
      ]),
      number(m.tokens),
      h("a", { href: `#/runs/${m.run_id}` }, [m.run_id]),
    ],
    "No messages match.",
    "messages",
  );
  main().replaceChildren(card("Message log", [filters, list]));
}
