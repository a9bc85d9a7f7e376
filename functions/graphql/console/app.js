// The apikeys console. Every action is a call to the public GraphQL API,
// the same a script would make. The API key lives in sessionStorage only
// (this tab, until "Sign out" or the tab closes); never in a URL, a cookie,
// localStorage or the title. Text from the API is set as text, never as HTML.
"use strict";

const STORE = "apikeys.key";
const ROLES = [
  { name: "TENANT_ADMIN", label: "Administrator", id: "6f0a3c52-7d1e-4b55-9a3e-2c1f00000001" },
  { name: "USER", label: "User", id: "6f0a3c52-7d1e-4b55-9a3e-2c1f00000002" },
  { name: "READ_ONLY_USER", label: "Read only", id: "6f0a3c52-7d1e-4b55-9a3e-2c1f00000003" },
];
const roleLabel = (name) => (ROLES.find((r) => r.name === name) || { label: name }).label;
const $ = (id) => document.getElementById(id);

let me = null; // { user_id, tenant_id, api_key_id, role, account_type, username, tenant }

// ---- DOM helpers ----------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// An icon drawn from SVG paths here: no icon font, no image request.
function icon(paths) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  for (const d of paths) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

// A trash bin; two arrows in a circle.
const trash = () => icon(["M3 6h18", "M8 6V4h8v2", "M6 6l1 14h10l1-14", "M10 11v6", "M14 11v6"]);
const rotateIcon = () => icon(["M20 11a8 8 0 0 0-14.3-4.9L4 8", "M4 3v5h5", "M4 13a8 8 0 0 0 14.3 4.9L20 16", "M20 21v-5h-5"]);

function flash(text, ok = true) {
  const el = $("flash");
  el.textContent = text;
  el.className = "flash " + (ok ? "ok" : "bad");
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 8000);
}

// ---- time -----------------------------------------------------------------

const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
const full = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "long" });

function relative(iso) {
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return rtf.format(Math.round(seconds / size), unit);
  }
  return rtf.format(Math.round(seconds), "second");
}

const when = (iso) => (iso ? h("time", { datetime: iso, title: full(iso) }, relative(iso)) : "Never");

// ---- the API --------------------------------------------------------------

class ApiError extends Error {}

const SAYS = {
  FORBIDDEN: "You don't have permission to do this.",
  SERVICE_UNAVAILABLE: "The service is briefly unavailable. Nothing was changed; try again in a moment.",
  OUTCOME_UNKNOWN: "The service could not confirm whether this was done. Reload the page to see before trying again.",
  QUERY_TOO_COMPLEX: "The request was too large for the service.",
  INTERNAL_SERVER_ERROR: "The service failed to do this. Try again; if it keeps failing, tell your operator.",
};

const sentence = (text) => {
  const s = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(s) ? s : s + ".";
};

function signedOut(message) {
  sessionStorage.removeItem(STORE);
  me = null;
  showSignIn(message);
}

async function gql(query, variables, key = sessionStorage.getItem(STORE)) {
  let response;
  try {
    response = await fetch("graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
      body: JSON.stringify({ query, variables: variables || {} }),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch (e) {
    throw new ApiError("Could not reach the service. Check your connection and try again.");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { /* answered below */ }
  const error = body && body.errors && body.errors[0];
  // The gateway's throttle has no GraphQL body; the member's change limit has.
  if (response.status === 429 && !error) throw new ApiError("Too many requests right now. Wait a moment and try again.");
  if (error) {
    const code = (error.extensions && error.extensions.code) || "";
    if (code === "UNAUTHENTICATED") {
      const e = new ApiError("unauthenticated");
      e.unauthenticated = true;
      throw e;
    }
    // The API's own sentences where they say what happened (input, permission,
    // availability), ours where they would show internals.
    const own = ["BAD_USER_INPUT", "FORBIDDEN", "SERVICE_UNAVAILABLE", "OUTCOME_UNKNOWN", "MEMBER_BUSY", "RATE_LIMITED",
      "ANSWER_TOO_LARGE"].includes(code) && error.message;
    throw new ApiError(own ? sentence(error.message) : SAYS[code] || "The request failed.");
  }
  if (!response.ok || !body || !body.data) {
    throw new ApiError(response.status >= 500 ? SAYS.SERVICE_UNAVAILABLE : `The service answered HTTP ${response.status}.`);
  }
  return body.data;
}

// Runs an action of a signed-in person: a key that stopped working signs out with why.
async function act(fn) {
  try {
    return await fn();
  } catch (e) {
    if (e.unauthenticated) {
      signedOut("Your API key stopped working: it may have been revoked, have expired, or its owner been removed from the tenant. Sign in with another key.");
      return undefined;
    }
    throw e;
  }
}

// ---- dialogs --------------------------------------------------------------

// Opens the dialog; `submit` runs on OK and closes it unless it throws (its
// message is shown) or returns true (it opened the dialog anew).
function dialog({ title, body, ok = "OK", danger = false, cancel = "Cancel", submit }) {
  const d = $("dialog");
  $("dialog-title").textContent = title;
  $("dialog-body").replaceChildren(...[].concat(body).filter((c) => c !== null && c !== undefined && c !== false));
  const error = $("dialog-error");
  error.hidden = true;
  const okButton = $("dialog-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "danger" : "";
  okButton.hidden = !submit;
  okButton.disabled = false;
  const cancelButton = $("dialog-cancel");
  cancelButton.textContent = cancel;
  $("dialog-form").onsubmit = async (event) => {
    event.preventDefault();
    if (!submit) return d.close();
    okButton.disabled = true;
    try {
      if (!(await submit()) && d.open) d.close();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      okButton.disabled = false;
    }
  };
  cancelButton.onclick = () => d.close();
  d.showModal();
  const first = d.querySelector("#dialog-body input, #dialog-body select, #dialog-body button") || (submit ? okButton : cancelButton);
  first.focus();
}

function showSecret(key, note) {
  const field = h("input", { id: "new-key", readonly: true, value: key, "aria-label": "The new API key", class: "mono" });
  const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await navigator.clipboard.writeText(key);
    } catch (e) {
      field.select();
      document.execCommand("copy");
    }
    copy.textContent = "Copied";
  } }, "Copy");
  dialog({
    title: "Your new API key",
    body: [
      h("p", {}, "Copy this key and keep it somewhere safe. You won't be able to see it again once you close this dialog."),
      h("div", { class: "secret" }, field, copy),
      note && h("p", { class: "hint", id: "secret-note" }, note),
    ],
    cancel: "Close",
  });
  field.select();
}

// "Create an API key" for `owner` (a user id); `after` reloads the page.
function createKeyDialog(owner, after) {
  const name = h("input", { id: "key-name", required: true, maxlength: 255, autocomplete: "off" });
  const expires = h("input", { id: "key-expires", type: "datetime-local", step: 60 });
  dialog({
    title: "Create an API key",
    ok: "Create",
    body: [
      h("label", { for: "key-name" }, "Name"), name,
      h("label", { for: "key-expires" }, "Expiration (optional)"), expires,
      h("p", { class: "hint" }, `In your time zone, ${ZONE}. Leave blank for a key that never expires.`),
    ],
    submit: async () => {
      const label = name.value.trim();
      if (!label) throw new ApiError("Give the key a name.");
      let expiresAt = null;
      if (expires.value) {
        const at = new Date(expires.value); // datetime-local is read in the browser's zone
        if (Number.isNaN(at.getTime())) throw new ApiError("That expiration is not a date and time.");
        if (at.getTime() <= Date.now()) throw new ApiError("The expiration is in the past. Choose a later time, or leave it blank.");
        expiresAt = at.toISOString();
      }
      const data = await act(() => gql(
        "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }",
        { input: { user_id: owner, name: label, expires_at: expiresAt } }));
      if (!data) return false;
      after();
      showSecret(data.create_api_key.key);
      return true;
    },
  });
}

function revokeKeyDialog(key, after) {
  dialog({
    title: `Revoke the API key ${key.name}?`,
    body: h("p", {}, "Clients using it will fail on their next request."),
    ok: "Revoke",
    danger: true,
    submit: async () => {
      const data = await act(() => gql(
        "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
        { input: { key_id: key.id } }));
      if (!data) return;
      if (!data.delete_api_key.success) throw new ApiError("That key was not found: it may already have been revoked.");
      flash(`The API key ${key.name} was revoked.`);
      after();
    },
  });
}

// ---- pages ----------------------------------------------------------------

const KEY_FIELDS = "id name user_id created expires_at key_hint last_used replaced_by rotated_from created_by { username }";

const GRACES = [
  { seconds: 0, label: "None: the old key stops now" },
  { seconds: 3600, label: "1 hour" },
  { seconds: 86400, label: "1 day" },
  { seconds: 604800, label: "7 days" },
];

function rotateKeyDialog(key, after) {
  const grace = h("select", { id: "rotate-grace" }, GRACES.map((g) => h("option", { value: g.seconds, selected: g.seconds === 3600 }, g.label)));
  dialog({
    title: `Rotate the API key ${key.name}?`,
    body: [
      h("p", {}, "A new key replaces it, with the same name, owner and expiry. Clients switch to the new key while the old one still works."),
      h("label", { for: "rotate-grace" }, "Keep the old key working for"), grace,
      h("p", { class: "hint" }, "Never past the old key's own expiry."),
    ],
    ok: "Rotate",
    submit: async () => {
      const data = await act(() => gql(
        "mutation($input: rotate_api_key_input!) { rotate_api_key(input: $input) { id key old_key_expires_at } }",
        { input: { key_id: key.id, grace_period_seconds: Number(grace.value) } }));
      if (!data) return false;
      const until = data.rotate_api_key.old_key_expires_at;
      after();
      showSecret(data.rotate_api_key.key,
        Number(grace.value) ? `The old key works until ${full(until)}.` : "The old key no longer works.");
      return true;
    },
  });
}

function keysTable(keys, after, { showCreator = false } = {}) {
  if (!keys.length) return null;
  return h("table", {},
    h("thead", {}, h("tr", {},
      h("th", {}, "Name"), h("th", { class: "hide-narrow" }, "Created"), showCreator && h("th", { class: "hide-narrow" }, "Created by"),
      h("th", {}, "Expires"), h("th", { class: "hide-narrow" }, "Last used"), h("th", { class: "hide-narrow" }, "Key"),
      h("th", { class: "actions" }, ""))),
    h("tbody", {}, keys.map((k) => h("tr", { "data-key-id": k.id },
      h("td", { class: "name", title: k.name }, k.name),
      h("td", { class: "hide-narrow" }, when(k.created)),
      showCreator && h("td", { class: "hide-narrow" }, (k.created_by && k.created_by.username) || ""),
      h("td", {}, when(k.expires_at), k.replaced_by && h("span", { class: "badge" }, "replaced")),
      h("td", { class: "hide-narrow" }, k.last_used ? when(k.last_used) : "Not yet"),
      h("td", { class: "hide-narrow mono" }, k.key_hint || ""),
      h("td", { class: "actions" },
        !k.replaced_by && h("button", {
          type: "button", class: "icon rotate", title: `Rotate ${k.name}`, "aria-label": `Rotate the API key ${k.name}`,
          onclick: () => rotateKeyDialog(k, after),
        }, rotateIcon()),
        h("button", {
          type: "button", class: "icon", title: `Revoke ${k.name}`, "aria-label": `Revoke the API key ${k.name}`,
          onclick: () => revokeKeyDialog(k, after),
        }, trash()))))));
}

const newestFirst = (a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0);

async function keysPage(root) {
  const data = await act(() => gql(`{ auth_api_key(order_by: [{created: desc}]) { ${KEY_FIELDS} } }`));
  if (!data) return;
  const mine = data.auth_api_key.filter((k) => k.user_id === me.user_id).sort(newestFirst);
  const search = h("input", { type: "search", id: "key-search", placeholder: "Search by name", "aria-label": "Search keys by name" });
  const list = h("div", {});
  const reload = () => render();
  const draw = () => {
    const term = search.value.trim().toLowerCase();
    const shown = mine.filter((k) => k.name.toLowerCase().includes(term));
    list.replaceChildren(keysTable(shown, reload) ||
      h("p", { class: "empty" }, mine.length ? "No key matches this search." :
        "You have no API keys in this tenant yet. Create one to authenticate a client, a CI job or the Prefect CLI."));
  };
  search.addEventListener("input", draw);
  draw();
  root.replaceChildren(
    h("h1", {}, "API Keys"),
    h("p", { class: "hint" }, `Your keys in ${me.tenant.name}. A key's secret is shown once, when it is created.`),
    h("div", { class: "toolbar" }, search,
      h("button", { type: "button", id: "create-key", onclick: () => createKeyDialog(me.user_id, reload) }, "Create an API key")),
    list);
}

const isAdmin = () => me.role === "TENANT_ADMIN";
const membershipIn = (user) => user.memberships.find((m) => m.tenant_id === me.tenant_id) || user.memberships[0];

async function serviceAccountsPage(root) {
  if (!isAdmin()) {
    root.replaceChildren(h("h1", {}, "Service Accounts"),
      h("p", { class: "empty" }, "You don't have permission to manage service accounts. Ask an administrator of this tenant."));
    return;
  }
  const data = await act(() => gql(`{ user_view_same_tenant { id username account_type memberships { id tenant_id role_detail { name } } }
    auth_api_key { ${KEY_FIELDS} } }`));
  if (!data) return;
  const accounts = data.user_view_same_tenant.filter((u) => u.account_type === "SERVICE")
    .sort((a, b) => a.username.localeCompare(b.username));
  const reload = () => render();
  const open = new Set(serviceAccountsPage.open || []);
  const rows = accounts.map((account) => {
    const keys = data.auth_api_key.filter((k) => k.user_id === account.id).sort(newestFirst);
    const expanded = open.has(account.id);
    const toggle = h("button", { type: "button", class: "link", "aria-expanded": String(expanded), onclick: () => {
      if (open.has(account.id)) open.delete(account.id); else open.add(account.id);
      serviceAccountsPage.open = [...open];
      render();
    } }, `${expanded ? "▾" : "▸"} ${account.username}`);
    const remove = h("button", { type: "button", class: "icon", "aria-label": `Remove the service account ${account.username}`,
      title: `Remove ${account.username}`, onclick: () => dialog({
        title: `Remove ${account.username}?`,
        body: h("p", {}, `${account.username} and all of its API keys will be deleted.`),
        ok: "Remove", danger: true,
        submit: async () => {
          const done = await act(() => gql(
            "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success error } }",
            { input: { user_id: account.id } }));
          if (!done) return;
          if (!done.delete_service_account.success) throw new ApiError(done.delete_service_account.error || "The service account was not removed.");
          flash(`The service account ${account.username} was removed.`);
          reload();
        },
      }) }, trash());
    const main = h("tr", { "data-account": account.username },
      h("td", { class: "name" }, toggle), h("td", {}, roleLabel(membershipIn(account).role_detail.name)),
      h("td", { class: "hide-narrow" }, `${keys.length} key${keys.length === 1 ? "" : "s"}`), h("td", { class: "actions" }, remove));
    if (!expanded) return [main];
    const detail = h("tr", {}, h("td", { colspan: 4 }, h("div", { class: "nested" },
      h("div", { class: "toolbar" }, h("strong", {}, `Keys of ${account.username}`),
        h("button", { type: "button", onclick: () => createKeyDialog(account.id, reload) }, "Create API key")),
      keysTable(keys, reload, { showCreator: true }) ||
        h("p", { class: "empty" }, "No keys yet. Create one to let this service account authenticate."))));
    return [main, detail];
  });
  root.replaceChildren(
    h("h1", {}, "Service Accounts"),
    h("p", { class: "hint" }, "Accounts for CI jobs, agents and other services, with their own API keys."),
    h("div", { class: "toolbar" }, h("span", {}),
      h("button", { type: "button", id: "add-service-account", onclick: () => addServiceAccountDialog(reload) }, "Add service account")),
    accounts.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Role"), h("th", { class: "hide-narrow" }, "Keys"),
          h("th", { class: "actions" }, ""))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No service accounts yet. Add one, then create an API key for it."));
}

function roleSelect(id, selected) {
  return h("select", { id }, ROLES.map((r) => h("option", { value: r.id, selected: r.name === selected }, r.label)));
}

function addServiceAccountDialog(after) {
  const name = h("input", { id: "sa-name", required: true, maxlength: 255, autocomplete: "off" });
  const role = roleSelect("sa-role", "TENANT_ADMIN");
  dialog({
    title: "Add service account",
    ok: "Add",
    body: [h("label", { for: "sa-name" }, "Name"), name, h("label", { for: "sa-role" }, "Role"), role],
    submit: async () => {
      const label = name.value.trim();
      if (!label) throw new ApiError("Give the service account a name.");
      const data = await act(() => gql(
        "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }",
        { input: { name: label, role_id: role.value } }));
      if (!data) return;
      serviceAccountsPage.open = [...(serviceAccountsPage.open || []), data.create_service_account.id];
      flash(`The service account ${label} was added. Create an API key for it below.`);
      after();
    },
  });
}

async function membersPage(root) {
  const data = await act(() => gql("{ user_view_same_tenant { id username email account_type memberships { id tenant_id role_detail { name } } } }"));
  if (!data) return;
  const people = data.user_view_same_tenant.filter((u) => u.account_type === "USER")
    .sort((a, b) => a.username.localeCompare(b.username));
  // Only a person who administers the tenant manages its people.
  const manage = isAdmin() && me.account_type === "USER";
  const reload = () => render();
  const rows = people.map((person) => {
    const membership = membershipIn(person);
    const current = membership.role_detail.name;
    const cells = [h("td", { class: "name", title: person.username }, person.username,
      person.id === me.user_id ? h("span", { class: "badge" }, "you") : null),
      h("td", { class: "hide-narrow name" }, person.email || "")];
    if (!manage) return h("tr", { "data-member": person.username }, cells, h("td", {}, roleLabel(current)));
    const select = roleSelect(`role-${person.id}`, current);
    select.setAttribute("aria-label", `Role of ${person.username}`);
    select.addEventListener("change", () => {
      const chosen = ROLES.find((r) => r.id === select.value);
      dialog({
        title: `Change ${person.username}'s role to ${chosen.label}?`,
        body: h("p", {}, "It applies on their very next request."),
        ok: "Change role",
        submit: async () => {
          const done = await act(() => gql(
            "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }",
            { input: { membership_id: membership.id, role_id: chosen.id } }));
          if (!done) return;
          flash(`${person.username} is now ${chosen.label}.`);
          if (person.id === me.user_id) me.role = chosen.name;
          await refreshWhoami();
          reload();
        },
      });
      $("dialog").addEventListener("close", () => { select.value = ROLES.find((r) => r.name === current).id; }, { once: true });
    });
    const remove = h("button", { type: "button", class: "icon", "aria-label": `Remove ${person.username} from the tenant`,
      title: `Remove ${person.username}`, onclick: () => dialog({
        title: `Remove ${person.username}?`,
        body: h("p", {}, `${person.username} will leave ${me.tenant.name}, and their API keys in it will be deleted.`),
        ok: "Remove", danger: true,
        submit: async () => {
          const done = await act(() => gql(
            "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success error } }",
            { input: { membership_id: membership.id } }));
          if (!done) return;
          if (!done.delete_membership.success) throw new ApiError(done.delete_membership.error || "The member was not removed.");
          flash(`${person.username} was removed from ${me.tenant.name}.`);
          reload();
        },
      }) }, trash());
    return h("tr", { "data-member": person.username }, cells, h("td", {}, select), h("td", { class: "actions" }, remove));
  });
  root.replaceChildren(
    h("h1", {}, "Members"),
    h("p", { class: "hint" }, manage ? "The people of this tenant. Change a role or remove a member; it applies at once."
      : "The people of this tenant and their roles."),
    people.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Username"), h("th", { class: "hide-narrow" }, "Email"), h("th", {}, "Role"),
          manage && h("th", { class: "actions" }, ""))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No members."));
}

const ACTIONS = {
  KEY_CREATED: "API key created", KEY_ROTATED: "API key rotated", KEY_REVOKED: "API key revoked",
  KEY_EXPIRED: "Expired API key removed", SERVICE_ACCOUNT_CREATED: "Service account created",
  SERVICE_ACCOUNT_REMOVED: "Service account removed", MEMBER_ADDED: "Member added", ROLE_CHANGED: "Role changed",
  MEMBER_REMOVED: "Member removed", TENANT_CREATED: "Tenant created",
};
const AUDIT_FIELDS = "id cursor at action actor_user_id actor_key_id actor_name actor_type target_type target_id target_name detail";

async function auditPage(root) {
  if (!isAdmin()) {
    root.replaceChildren(h("h1", {}, "Audit log"),
      h("p", { class: "empty" }, "You don't have permission to read the audit log. Ask an administrator of this tenant."));
    return;
  }
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "secondary", id: "audit-more" }, "Load older");
  let before = null;
  const load = async () => {
    more.disabled = true;
    const data = await act(() => gql(`query($before: String) { audit_log(limit: 50, before: $before) { ${AUDIT_FIELDS} } }`,
      { before }));
    if (!data) return;
    const page = data.audit_log;
    body.append(...page.map((r) => h("tr", { "data-action": r.action },
      h("td", {}, when(r.at)),
      h("td", {}, ACTIONS[r.action] || r.action),
      h("td", { class: "name" }, r.actor_name, r.actor_type === "SERVICE" && h("span", { class: "badge" }, "service account"), r.actor_key_id && h("span", { class: "hint mono", title: `API key ${r.actor_key_id}` }, ` key ${r.actor_key_id.slice(0, 8)}`)),
      h("td", { class: "name" }, r.target_name || r.target_id),
      h("td", { class: "hide-narrow" }, r.detail || ""))));
    before = page.length ? page[page.length - 1].cursor : before;
    more.hidden = page.length < 50;
    more.disabled = false;
    if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "Nothing has happened in this tenant yet.")));
  };
  root.replaceChildren(
    h("h1", {}, "Audit log"),
    h("p", { class: "hint" }, "Every change to keys, service accounts and members of this tenant, newest first. Records are kept for the retention your operator set."),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "What"), h("th", {}, "By"), h("th", {}, "On"),
      h("th", { class: "hide-narrow" }, "Detail"))), body),
    h("div", { class: "toolbar" }, h("span", {}), more));
  more.addEventListener("click", () => load().catch((e) => flash(e.message, false)));
  await load();
}

// ---- shell ----------------------------------------------------------------

const PAGES = { keys: keysPage, "service-accounts": serviceAccountsPage, members: membersPage, audit: auditPage };

async function render() {
  if (!me) return;
  // Only the pages' own names: "#__proto__" and the like are no page.
  const asked = location.hash.slice(1);
  const name = Object.hasOwn(PAGES, asked) ? asked : "keys";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const root = $("page");
  try {
    await PAGES[name](root);
  } catch (e) {
    root.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
  }
}

const WHOAMI = "{ auth_info { user_id tenant_id api_key_id role account_type } user { id username } tenant { id name slug } }";

function applyWhoami(data) {
  const info = data.auth_info;
  me = { ...info, username: data.user[0].username, tenant: data.tenant.find((t) => t.id === info.tenant_id) };
  $("whoami").replaceChildren(h("span", {},
    h("strong", {}, me.username), me.account_type === "SERVICE" && h("span", { class: "badge" }, "service account"),
    " · ", me.tenant.name, " (", h("span", { class: "mono" }, me.tenant.slug), ") · ", roleLabel(me.role)));
}

async function refreshWhoami() {
  const data = await act(() => gql(WHOAMI));
  if (data) applyWhoami(data);
}

function showSignIn(message) {
  for (const id of ["whoami", "sign-out", "nav", "page"]) $(id).hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("sign-in-key").value = "";
  $("sign-in-key").focus();
}

function showConsole() {
  $("sign-in").hidden = true;
  for (const id of ["whoami", "sign-out", "nav", "page"]) $(id).hidden = false;
  render();
}

async function signIn(key) {
  const data = await gql(WHOAMI, null, key);
  sessionStorage.setItem(STORE, key);
  // The page keeps the key nowhere else, the hidden sign-in field least of all.
  $("sign-in-key").value = "";
  applyWhoami(data);
  showConsole();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("sign-in-key").value.trim();
    const error = $("sign-in-error");
    try {
      await signIn(key);
    } catch (e) {
      error.textContent = e.unauthenticated
        ? "That API key was not accepted. Check that it is complete; it may also have been revoked or have expired."
        : e.message;
      error.hidden = false;
    }
  });
  $("sign-out").addEventListener("click", () => {
    signedOut(null);
    flash("You are signed out. The key was forgotten by this tab.");
  });
  // A closed dialog keeps nothing, the secret it showed least of all.
  $("dialog").addEventListener("close", () => $("dialog-body").replaceChildren());
  window.addEventListener("hashchange", render);
  const key = sessionStorage.getItem(STORE);
  if (!key) return showSignIn(null);
  signIn(key).catch((e) => signedOut(e.unauthenticated
    ? "Your API key stopped working: it may have been revoked, have expired, or its owner been removed from the tenant. Sign in with another key."
    : e.message));
});
