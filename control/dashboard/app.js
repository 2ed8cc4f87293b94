// Delta's dashboard: ES modules, no framework, no build step, typed with
// JSDoc and checked by `tsc --checkJs --strict` (package.json). This one
// signs in, switches tenants and routes; core.js holds the session and the
// API call; each page group has its module.
//
// It speaks the same /v1 API as every client, with the signed-in user's own
// permissions. The access token lives in memory only; the refresh token in
// sessionStorage (it ends with the tab), never in a URL or localStorage.

import { agentView, agentsView, requestsView, runView } from "./agents.js";
import { bountiesView, bountyView } from "./bounties.js";
import { all, api, ctx, h, keep, main, messageOf, refresh, say, signOut } from "./core.js";
import { messagesView, templatesView } from "./messaging.js";
import { auditView, keysView, membersView } from "./team.js";
import { usageView } from "./usage.js";

const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
const who = /** @type {HTMLElement} */ (document.getElementById("who"));
const signoutButton = /** @type {HTMLButtonElement} */ (document.getElementById("signout"));

/** @type {Record<string, (id: string) => Promise<void>>} the views by the address's first part */
const VIEWS = {
  agents: (id) => (id ? agentView(id) : agentsView()),
  runs: (id) => (id ? runView(id) : agentsView()),
  requests: () => requestsView(),
  usage: () => usageView(),
  templates: () => templatesView(),
  messages: () => messagesView(),
  bounties: (id) => (id ? bountyView(id) : bountiesView()),
  members: () => membersView(),
  audit: () => auditView(),
  keys: () => keysView(),
};

function showSignIn() {
  const template = /** @type {HTMLTemplateElement} */ (document.getElementById("signin-template"));
  main().replaceChildren(template.content.cloneNode(true));
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
      error.textContent = `${body.message ?? "Sign-in failed."} (request ${body.request_id ?? "?"})`;
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
    ctx.app = select.value;
    const me = await api("GET", "/v1/me");
    await route();
    // After the view: a route clears the status line.
    say(`Now acting in ${select.selectedOptions[0]?.textContent ?? ctx.app} as ${me.role}.`);
  });
  return select;
}

async function route() {
  ctx.leaving.abort();
  ctx.leaving = new AbortController();
  if (!ctx.session) return showSignIn();
  const hash = location.hash || "#/agents";
  const [, view = "agents", id = ""] = hash.split("/");
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${view}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  try {
    await (VIEWS[view] ?? VIEWS["agents"])(decodeURIComponent(id));
    // Keyboard and screen-reader users land on the new view's heading.
    const heading = /** @type {HTMLElement | null} */ (main().querySelector("h1"));
    if (heading && document.activeElement === document.body) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  } catch (error) {
    main().replaceChildren(h("section", { class: "card" }, [h("p", { class: "error", role: "alert" }, [messageOf(error)])]));
  }
}

ctx.reroute = route;
ctx.signedOut = (message) => {
  nav.hidden = true;
  signoutButton.hidden = true;
  who.textContent = "";
  say(message ?? "");
  showSignIn();
};
window.addEventListener("hashchange", () => void route());
// The skip link moves the focus; following "#main" would change the route.
document.querySelector(".skip")?.addEventListener("click", (event) => {
  event.preventDefault();
  main().focus();
});
signoutButton.addEventListener("click", () => signOut("Signed out."));

// A reload in the same tab keeps the session (the refresh token is in
// sessionStorage); a new tab signs in again.
const saved = sessionStorage.getItem("delta.refresh");
if (saved) {
  ctx.session = { access: "", refresh: saved, tenant: "" };
  refresh().then((ok) => (ok ? signedIn() : signOut()), () => signOut());
} else {
  showSignIn();
}
