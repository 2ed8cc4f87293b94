// The tenant's people and records: members and roles (invite by email,
// change a role, remove), the audit log, and API keys.

import {
  all, api, badge, button, card, dayStartMs, field, form, h, input, main, messageOf, say, select, table, when, withQuery,
} from "./core.js";

const ROLES = /** @type {[string, string][]} */ ([["member", "Member"], ["admin", "Admin"], ["owner", "Owner"]]);

export async function membersView() {
  const members = await all("/v1/tenants/current/members");
  const email = input("invite-email", { type: "email", required: "", autocomplete: "off" });
  const role = select("invite-role", ROLES);
  const invite = form("invite-form", [
    h("div", { class: "row" }, [field("Email", email), field("Role", role)]),
  ], "Invite", async () => {
    const invited = await api("POST", "/v1/tenants/current/members", { email: email.value, role: role.value });
    await membersView();
    // The same answer whether or not the address has an account.
    say(`Invited ${invited.email} as ${invited.role}: the invitation is theirs to accept until ${when(invited.expires_at_ms)}.`);
  });
  const rows = members.map((m) => {
    const change = select(`role-${m.user_id}`, ROLES);
    change.value = m.role;
    change.setAttribute("aria-label", `Role of ${m.email}`);
    let confirming = false;
    const remove = button(`Remove ${m.email}`, async () => {
      // Two steps: a removal takes every access away at once.
      if (!confirming) {
        confirming = true;
        remove.textContent = `Confirm removing ${m.email}`;
        return;
      }
      await api("DELETE", `/v1/tenants/current/members/${m.user_id}`);
      await membersView();
      say(`Removed ${m.email}.`);
    }, "danger");
    return [
      m.email,
      h("span", { class: "actions" }, [
        change,
        button(`Change role of ${m.email}`, async () => {
          const changed = await api("PATCH", `/v1/tenants/current/members/${m.user_id}`, { role: change.value });
          await membersView();
          say(`${changed.email} is now ${changed.role}.`);
        }, "secondary"),
      ]),
      when(m.created_at_ms),
      remove,
    ];
  });
  main().replaceChildren(
    card("Members and roles", [table(["Email", "Role", "Joined", ""], rows, "No members.")]),
    card("Invite someone", [invite], "h2"),
  );
}

/** The audit log's filter, kept while the user moves between pages. */
const auditFilter = { action: "", user: "", from: "", to: "" };

/**
 * The audit log, newest first. The API pages through it without filters,
 * so the filter is applied here while walking back page by page: "More"
 * fetches until it has a screenful of matches, the period's start, or the
 * log's.
 */
export async function auditView() {
  const members = await all("/v1/tenants/current/members").catch(() => []);
  const emails = new Map(members.map((m) => [m.user_id, m.email]));
  const action = input("audit-action", { autocomplete: "off", placeholder: "e.g. member_" });
  const user = select("audit-user", [["", "Anyone"], ...members.map((m) => /** @type {[string, string]} */ ([m.user_id, m.email]))]);
  const from = input("audit-from", { type: "date" });
  const to = input("audit-to", { type: "date" });
  action.value = auditFilter.action;
  user.value = auditFilter.user;
  from.value = auditFilter.from;
  to.value = auditFilter.to;
  const filters = form("audit-filter", [
    h("div", { class: "row" }, [field("Action contains", action), field("By", user), field("From", from), field("To", to)]),
  ], "Apply filters", async () => {
    Object.assign(auditFilter, { action: action.value.trim(), user: user.value, from: from.value, to: to.value });
    await auditView();
  });

  const since = dayStartMs(auditFilter.from) ?? 0;
  const toDay = dayStartMs(auditFilter.to);
  const until = toDay === undefined ? Infinity : toDay + 86_400_000;
  /** @param {any} e */
  const matches = (e) =>
    e.at_ms >= since && e.at_ms < until &&
    (!auditFilter.action || e.action.includes(auditFilter.action)) &&
    (!auditFilter.user || e.user_id === auditFilter.user);
  /** @type {any[]} */
  const shown = [];
  /** Matches fetched, not shown yet (a page of the API holds up to 200). @type {any[]} */
  const waiting = [];
  /** @type {string | null} null: the log (or the period) has no more */
  let cursor = "";
  const box = h("div", { id: "audit", "aria-live": "polite" });
  const more = async () => {
    while (waiting.length < 50 && cursor !== null) {
      const page = await api("GET", withQuery("/v1/audit", { limit: 200, cursor }));
      cursor = page.next_cursor ?? null;
      for (const entry of page.items) {
        if (entry.at_ms < since) {
          // Newest first: the rest is older still.
          cursor = null;
          break;
        }
        if (matches(entry)) waiting.push(entry);
      }
    }
    shown.push(...waiting.splice(0, 50));
    draw();
  };
  const draw = () => {
    const rows = shown.map((e) => [
      when(e.at_ms),
      e.action,
      e.user_id ? emails.get(e.user_id) ?? e.user_id : "system",
      h("code", { class: "clip" }, [JSON.stringify(e.detail)]),
      e.request_id ?? "—",
    ]);
    box.replaceChildren(
      table(["When", "Action", "By", "Detail", "Request"], rows, "No audit entries match."),
      ...(waiting.length > 0 || cursor !== null ? [button("More", more, "secondary")] : []),
    );
  };
  try {
    await more();
  } catch (error) {
    box.replaceChildren(h("p", { class: "error", role: "alert" }, [messageOf(error)]));
  }
  main().replaceChildren(card("Audit log", [filters, box]));
}

export async function keysView() {
  const keys = await all("/v1/api-keys");
  const name = input("key-name", { required: "", maxlength: "100", autocomplete: "off" });
  const shown = h("div", { id: "new-key", "aria-live": "polite" });
  const create = form("key-form", [field("Name of a new key", name)], "Create key", async () => {
    const created = await api("POST", "/v1/api-keys", { name: name.value });
    await keysView();
    // Shown here once: the API never shows a key's secret again.
    const again = /** @type {HTMLElement} */ (document.getElementById("new-key"));
    again.replaceChildren(
      h("p", {}, [`Copy the key "${created.name}" now: it will not be shown again.`]),
      h("code", { id: "new-key-secret" }, [created.key]),
    );
  });
  const rows = keys.map((key) => [
    key.name,
    h("code", {}, [key.prefix]),
    (key.scopes ?? []).join(", "),
    key.last_used_at_ms ? when(key.last_used_at_ms) : "never",
    key.revoked_at_ms
      ? badge("revoked", "warn")
      : button(`Revoke ${key.name}`, async () => {
          await api("DELETE", `/v1/api-keys/${key.id}`);
          await keysView();
          say(`Revoked ${key.name}.`);
        }, "danger"),
  ]);
  main().replaceChildren(
    card("API keys", [create, shown]),
    h("section", { class: "card" }, [table(["Name", "Prefix", "Scopes", "Last used", ""], rows, "No API keys.")]),
  );
}
