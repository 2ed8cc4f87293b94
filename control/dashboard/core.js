// What every page of the dashboard shares: the session, the API call, and
// small DOM helpers. Imports nothing, so every page module can import it.
//
// The access token lives in memory only; the refresh token in
// sessionStorage (it ends with the tab), never in a URL or localStorage.

/** @typedef {{ access: string, refresh: string, tenant: string }} Session */
/** @typedef {{ code?: string, message?: string, request_id?: string }} ErrorBody */

/**
 * The signed-in state, shared by every module (an object: importers cannot
 * assign an imported binding).
 * @type {{ session: Session | null, app: string, leaving: AbortController, signedOut: (message?: string) => void, reroute: () => Promise<void> }}
 */
export const ctx = {
  session: null,
  /** The tenant acted in (`X-App-ID`); empty: the session's own. */
  app: "",
  /** Cancels the live log of the view being left. */
  leaving: new AbortController(),
  /** Set by app.js: what to show once the session ends. */
  signedOut: () => {},
  /** Set by app.js: show the view of the current address again. */
  reroute: async () => {},
};

/** Show the current view again (after a change it shows). */
export const route = () => ctx.reroute();

/** The element views draw into. */
export const main = () => /** @type {HTMLElement} */ (document.getElementById("main"));

const statusLine = /** @type {HTMLElement} */ (document.getElementById("status"));

export class ApiError extends Error {
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
export async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = crypto.randomUUID();
  if (ctx.app) headers["X-App-ID"] = ctx.app;
  for (let attempt = 0; attempt < 2; attempt++) {
    if (ctx.session) headers["Authorization"] = `Bearer ${ctx.session.access}`;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && ctx.session && attempt === 0 && (await refresh())) continue;
    if (response.status === 401 && ctx.session) signOut("Your session ended: sign in again.");
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // A proxy's HTML error page: keep the status, say what came back.
      data = { message: text.slice(0, 200) };
    }
    if (!response.ok) throw new ApiError(response.status, data ?? {});
    return data;
  }
  throw new Error("unreachable");
}

/** @returns {Promise<boolean>} */
export async function refresh() {
  if (!ctx.session) return false;
  const response = await fetch("/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: ctx.session.refresh }),
  });
  if (!response.ok) return false;
  const tokens = await response.json();
  keep({ access: tokens.access_token, refresh: tokens.refresh_token, tenant: tokens.tenant_id });
  return true;
}

/** @param {Session} next */
export function keep(next) {
  ctx.session = next;
  sessionStorage.setItem("delta.refresh", next.refresh);
}

/** @param {string} [message] */
export function signOut(message) {
  const ending = ctx.session;
  ctx.session = null;
  ctx.app = "";
  sessionStorage.removeItem("delta.refresh");
  if (ending) {
    fetch("/v1/auth/logout", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: ending.refresh }),
    }).catch(() => {});
  }
  ctx.signedOut(message);
}

/** Every item of a list (follows next_cursor). @param {string} path @returns {Promise<any[]>} */
export async function all(path) {
  const items = [];
  let cursor = "";
  for (;;) {
    const page = await api("GET", withQuery(path, { limit: "200", cursor }));
    items.push(...page.items);
    if (!page.next_cursor) return items;
    cursor = page.next_cursor;
  }
}

/**
 * `path` with the non-empty values of `query` appended.
 * @param {string} path @param {Record<string, string | number | undefined>} query
 */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  if (!text) return path;
  return `${path}${path.includes("?") ? "&" : "?"}${text}`;
}

// ---- helpers ---------------------------------------------------------------

/** @param {string} message */
export function say(message) {
  statusLine.textContent = message;
}

/** @param {unknown} error */
export function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}

/**
 * An element with attributes and children.
 * @param {string} tag @param {Record<string, string>} [attrs] @param {(Node | string)[]} [children]
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, children = []) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  for (const child of children) element.append(child);
  return element;
}

/**
 * A table, or the empty state when there are no rows. A column whose name
 * starts with "#" is numeric (right-aligned; the "#" is not shown).
 * @param {string[]} columns @param {(Node | string)[][]} rows @param {string} empty
 * @param {string} [caption]
 */
export function table(columns, rows, empty, caption) {
  if (rows.length === 0) return h("p", { class: "empty" }, [empty]);
  const numeric = columns.map((c) => c.startsWith("#"));
  const cell = (/** @type {string} */ tag, /** @type {Node | string} */ c, /** @type {number} */ i) =>
    h(tag, numeric[i] ? { class: "num" } : {}, [c]);
  return h("div", { class: "scroll" }, [
    h("table", {}, [
      ...(caption ? [h("caption", {}, [caption])] : []),
      h("thead", {}, [h("tr", {}, columns.map((c, i) => {
        const th = cell("th", numeric[i] ? c.slice(1) : c, i);
        th.setAttribute("scope", "col");
        return th;
      }))]),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c, i) => cell("td", c, i))))),
    ]),
  ]);
}

/** @param {string} label @param {() => Promise<void>} action @param {string} [kind] */
export function button(label, action, kind = "") {
  const b = /** @type {HTMLButtonElement} */ (h("button", { type: "button", class: kind }, [label]));
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await action();
    } catch (error) {
      say(messageOf(error));
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/**
 * A labelled control: its label, then the control (given an id if absent).
 * @param {string} label @param {HTMLElement} control @param {string} [hint]
 */
export function field(label, control, hint) {
  if (!control.id) control.id = `f-${crypto.randomUUID().slice(0, 8)}`;
  const parts = [h("label", { for: control.id }, [label]), control];
  if (hint) {
    const id = `${control.id}-hint`;
    control.setAttribute("aria-describedby", id);
    parts.push(h("small", { id, class: "hint" }, [hint]));
  }
  return h("div", { class: "field" }, parts);
}

/**
 * A select of `options` ([value, label]); the first is chosen.
 * @param {string} id @param {[string, string][]} options
 */
export function select(id, options) {
  return /** @type {HTMLSelectElement} */ (
    h("select", { id, name: id }, options.map(([value, label]) => h("option", { value }, [label])))
  );
}

/** @param {string} id @param {Record<string, string>} [attrs] */
export function input(id, attrs = {}) {
  return /** @type {HTMLInputElement} */ (h("input", { id, name: id, ...attrs }));
}

/**
 * A form whose submit runs `action`; a failure is shown in the form (with
 * the request id) and the focus goes to it.
 * @param {string} id @param {Node[]} children @param {string} submit
 * @param {(form: HTMLFormElement) => Promise<void>} action
 */
export function form(id, children, submit, action) {
  const problem = h("p", { class: "error", role: "alert", id: `${id}-error` });
  const f = /** @type {HTMLFormElement} */ (
    h("form", { id }, [...children, h("button", { type: "submit" }, [submit]), problem])
  );
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    const submitButton = /** @type {HTMLButtonElement | null} */ (f.querySelector("button[type=submit]"));
    if (submitButton) submitButton.disabled = true;
    try {
      await action(f);
    } catch (error) {
      problem.textContent = messageOf(error);
    } finally {
      if (submitButton) submitButton.disabled = false;
    }
  });
  return f;
}

/**
 * A list fetched a page at a time: `load(cursor)` answers a page, the rows
 * go into `body` (a table, or the empty state) and a "More" button fetches
 * the next page while there is one.
 * @param {(cursor: string) => Promise<{ items: any[], next_cursor?: string | null }>} load
 * @param {string[]} columns @param {(item: any) => (Node | string)[]} row @param {string} empty
 * @param {string} id the list's element id
 */
export async function paged(load, columns, row, empty, id) {
  const box = h("div", { id, "aria-live": "polite" });
  /** @type {any[]} */
  const items = [];
  const draw = (/** @type {string | null | undefined} */ next) => {
    const more = next
      ? [button("More", async () => {
          const page = await load(next);
          items.push(...page.items);
          draw(page.next_cursor);
        }, "secondary")]
      : [];
    box.replaceChildren(table(columns, items.map(row), empty), ...more);
  };
  const first = await load("");
  items.push(...first.items);
  draw(first.next_cursor);
  return box;
}

/** @param {number} n */
export const number = (n) => n.toLocaleString("en");

/** A time as `YYYY-MM-DD HH:MM UTC`: the same for every reader, whatever their locale. @param {number} ms */
export const when = (ms) => `${new Date(ms).toISOString().slice(0, 16).replace("T", " ")} UTC`;

/**
 * Minor units as money of `currency` (display only: amounts stay integers).
 * @param {number} minor @param {string} currency
 */
export function money(minor, currency) {
  const format = new Intl.NumberFormat("en", { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(minor / 10 ** digits);
}

/** @param {string} text @param {"ok" | "warn" | ""} [kind] */
export const badge = (text, kind = "") => h("span", { class: `badge ${kind}` }, [text]);

/** The `YYYY-MM-DD` of a date input as ms (start of that day, UTC), or undefined. @param {string} day */
export function dayStartMs(day) {
  return day ? Date.parse(`${day}T00:00:00Z`) : undefined;
}

/** @param {string} title @param {Node[]} children @param {string} [level] */
export function card(title, children, level = "h1") {
  return h("section", { class: "card" }, [h(level, {}, [title]), ...children]);
}
