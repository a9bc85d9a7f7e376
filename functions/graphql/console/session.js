// The signed-in person: who they are, what they may do (the server's own
// `auth_info.permissions`, never rules copied here), the roles the tenant
// knows (from the server, with their ids), and the credential the client
// sends. The API key lives in sessionStorage only (this tab, until "Sign
// out" or the tab closes); never in a URL, a cookie, localStorage or the
// title.

import { createClient } from "./api.js";

const STORE = "apikeys.key";

// The credential provider of an API key kept in this tab.
export const apiKeyCredential = {
  header: () => {
    const key = sessionStorage.getItem(STORE);
    return key ? "Bearer " + key : null;
  },
  keep: (key) => sessionStorage.setItem(STORE, key),
  forget: () => sessionStorage.removeItem(STORE),
  present: () => sessionStorage.getItem(STORE) !== null,
};

export const gql = createClient(apiKeyCredential.header);

// Role names as shown to people (the ids and the list come from the server).
const LABELS = { TENANT_ADMIN: "Administrator", USER: "User", READ_ONLY_USER: "Read only" };
export const roleLabel = (name) => (Object.hasOwn(LABELS, name) ? LABELS[name] : name);

const WHOAMI = `{ auth_info { user_id tenant_id api_key_id role account_type permissions }
  user { id username } tenant { id name slug } role { id name } }`;

// { user_id, tenant_id, api_key_id, role, account_type, permissions, username, tenant, roles }, or null.
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
  };
  return me;
}

export function end() {
  apiKeyCredential.forget();
  me = null;
}

// The user's membership in the signed-in tenant.
export const membershipIn = (user) => user.memberships.find((m) => m.tenant_id === me.tenant_id) || user.memberships[0];
