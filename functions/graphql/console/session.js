// The signed-in person: who they are, what they may do (the server's own
// `auth_info.permissions`, never rules copied here), the roles the tenant
// knows (from the server, with their ids), and the credential the client
// sends: an API key, or the session a sign-in with the identity provider
// gave. Either lives in sessionStorage only (this tab, until "Sign out" or
// the tab closes); never in a URL, a cookie, localStorage or the title.

import { createClient } from "./api.js";

const STORE = "apikeys.key";
const SESSION = "apikeys.session";

// The credential provider of an API key kept in this tab.
export const apiKeyCredential = {
  header: () => {
    const key = sessionStorage.getItem(STORE);
    return key ? "Bearer " + key : null;
  },
  keep: (key) => {
    sessionStorage.removeItem(SESSION);
    sessionStorage.setItem(STORE, key);
  },
  forget: () => sessionStorage.removeItem(STORE),
  present: () => sessionStorage.getItem(STORE) !== null,
};

const REFRESH = `mutation($a: String!) { refresh_token(input: {access_token: $a}) {
  access_token refresh_token expires_at tenant_id } }`;

// A person's session (signed in with the identity provider): sent as
// `Authorization: Session …`, refreshed a minute before its access token
// expires (and once more when the server says it did).
export const sessionCredential = {
  read: () => {
    try { return JSON.parse(sessionStorage.getItem(SESSION) || "null"); } catch (e) { return null; }
  },
  keep: (tokens) => {
    sessionStorage.removeItem(STORE);
    sessionStorage.setItem(SESSION, JSON.stringify({ access: tokens.access_token, refresh: tokens.refresh_token,
      expires_at: tokens.expires_at, tenant_id: tokens.tenant_id || null }));
  },
  forget: () => sessionStorage.removeItem(SESSION),
  present: () => sessionStorage.getItem(SESSION) !== null,
  // In a tenant (else: a person no tenant has taken in yet).
  inTenant: () => Boolean((sessionCredential.read() || {}).tenant_id),
};

let refreshing = null;

// New tokens for the session; false when it cannot be refreshed (ended).
async function refreshSession() {
  const s = sessionCredential.read();
  if (!s) return false;
  if (!refreshing) {
    refreshing = createClient(() => "Bearer " + s.refresh)(REFRESH, { a: s.access })
      .then((data) => {
        // Signed out (or in again) meanwhile: the late answer is dropped.
        const now = sessionCredential.read();
        if (!now || now.access !== s.access) return false;
        sessionCredential.keep(data.refresh_token);
        return true;
      })
      .catch(() => false)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function header() {
  const key = apiKeyCredential.header();
  if (key) return key;
  let s = sessionCredential.read();
  if (!s) return null;
  if (Date.parse(s.expires_at) - Date.now() < 60000 && (await refreshSession())) s = sessionCredential.read();
  return "Session " + s.access;
}

const send = createClient(header);

// A GraphQL call as the signed-in person (a session that expired is
// refreshed and the call sent once more).
export async function gql(query, variables) {
  try {
    return await send(query, variables);
  } catch (e) {
    if (e.reason === "session_expired" && (await refreshSession())) return send(query, variables);
    throw e;
  }
}

// Role names as shown to people (the ids and the list come from the server).
const LABELS = { TENANT_ADMIN: "Administrator", USER: "User", READ_ONLY_USER: "Read only" };
export const roleLabel = (name) => (Object.hasOwn(LABELS, name) ? LABELS[name] : name);

const WHOAMI = `{ auth_info { user_id tenant_id api_key_id role account_type permissions }
  user { id username } tenant { id name slug } role { id name } my_tenants { id name slug role } }`;

// { user_id, tenant_id, api_key_id, role, account_type, permissions, username, tenant, roles, tenants, person }, or null.
export let me = null;

// May the signed-in person do `permission` ("create:service_account", ...)?
export const can = (permission) => Boolean(me && me.permissions.includes(permission));

// Who the credential is, read from the server; with `key`, the key to try
// (kept only once the server accepted it).
export async function load(key) {
  const data = key === undefined ? await gql(WHOAMI) : await createClient(() => "Bearer " + key)(WHOAMI);
  if (key !== undefined) apiKeyCredential.keep(key);
  const info = data.auth_info;
  me = {
    ...info,
    permissions: info.permissions || [],
    username: data.user[0].username,
    tenant: data.tenant.find((t) => t.id === info.tenant_id),
    roles: data.role.map((r) => ({ ...r, label: roleLabel(r.name) })),
    tenants: data.my_tenants,
    // Signed in with the identity provider (not with a key).
    person: sessionCredential.present() && key === undefined,
  };
  return me;
}

// Forgets the credential at once; a session is also ended on the server
// (at best: unanswered, it ends by itself within the hour).
export function end() {
  const s = !apiKeyCredential.present() && sessionCredential.read();
  apiKeyCredential.forget();
  sessionCredential.forget();
  me = null;
  if (s) createClient(() => "Session " + s.access)("mutation { log_out { success } }").catch(() => {});
}

// Moves the person's session into another of their tenants.
export async function switchTenant(tenantId) {
  const data = await gql("mutation($t: UUID!) { switch_tenant(input: {tenant_id: $t}) { access_token refresh_token expires_at tenant_id } }",
    { t: tenantId });
  sessionCredential.keep(data.switch_tenant);
}

// The user's membership in the signed-in tenant.
export const membershipIn = (user) => user.memberships.find((m) => m.tenant_id === me.tenant_id) || user.memberships[0];
