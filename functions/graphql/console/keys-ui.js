// Keys as every page shows them: the table, and the dialogs that create,
// rotate and revoke one. `ctx` is the page's context (see main.js): `act`
// runs an API call as the signed-in person, `reload` draws the page again.

import { h, flash, when, full, trash, rotateIcon, pauseIcon, playIcon } from "./dom.js";
import { ApiError } from "./api.js";
import { gql, me, can, roleLabel } from "./session.js";
import { dialog, showSecret, expiryField } from "./dialog.js";

export const KEY_FIELDS = "id name user_id created expires_at key_hint last_used replaced_by rotated_from created_by { username } role_ceiling { name } disabled allowed_networks scopes policy_violation leaked";

// What a key breaking the tenant's key policy is told (the reason codes).
const VIOLATIONS = {
  policy_max_lifetime: "It lives longer than the tenant's key policy allows (or never expires): it is refused until the policy is loosened. Replace it with a key that meets the policy.",
  policy_scopes_required: "It has no scopes, and the tenant's key policy requires them: it is refused until the policy is loosened. Replace it with a scoped key.",
};

// Scopes as typed: separated by commas or spaces (none: null, not limited).
const scopesOf = (text) => {
  const scopes = text.split(/[\s,]+/).filter((s) => s);
  return scopes.length ? scopes : null;
};

const GRACES = [
  { seconds: 0, label: "None: the old key stops now" },
  { seconds: 3600, label: "1 hour" },
  { seconds: 86400, label: "1 day" },
  { seconds: 604800, label: "7 days" },
];

// "Create an API key" for `owner` (a user id).
export function createKeyDialog(ctx, owner) {
  const name = h("input", { id: "key-name", required: true, maxlength: 255, autocomplete: "off" });
  const expires = expiryField();
  const ceiling = h("select", { id: "key-role" },
    h("option", { value: "" }, "Everything its owner may do"),
    me.roles.map((r) => h("option", { value: r.id }, `At most: ${r.label}`)));
  const networks = h("input", { id: "key-networks", autocomplete: "off", spellcheck: "false", placeholder: "e.g. 203.0.113.0/24, 2001:db8::/32" });
  const scopes = h("input", { id: "key-scopes", autocomplete: "off", spellcheck: "false", placeholder: "e.g. orders:read, apikeys:read" });
  dialog({
    title: "Create an API key",
    ok: "Create",
    body: [h("label", { for: "key-name" }, "Name"), name, h("label", { for: "key-expires" }, "Expiration (optional)"), expires.input, expires.hint,
      h("label", { for: "key-role" }, "What the key may do"), ceiling,
      h("p", { class: "hint" }, "A key acts with the lower of this and its owner's role, at every request. A read-only key reads and changes nothing."),
      h("label", { for: "key-networks" }, "Allowed networks (optional)"), networks,
      h("p", { class: "hint" }, "Addresses or CIDRs, separated by commas or spaces. Blank: from anywhere (signed in with a network-limited key: from that key's networks)."),
      h("label", { for: "key-scopes" }, "Scopes (optional)"), scopes,
      h("p", { class: "hint" }, "resource:action, separated by commas or spaces (orders:* for every action on orders). A scoped key reaches only the routes its scopes name; it uses this console's API only with apikeys:read or apikeys:write. Blank: not limited by scopes.")],
    submit: async () => {
      const label = name.value.trim();
      if (!label) throw new ApiError("Give the key a name.");
      const expiresAt = expires.read();
      const data = await ctx.act(() => gql(
        "mutation($input: create_api_key_input!) { create_api_key(input: $input) { id key } }",
        { input: { user_id: owner, name: label, expires_at: expiresAt, role_id: ceiling.value || null,
          allowed_networks: networks.value.split(/[\s,]+/).filter((n) => n), scopes: scopesOf(scopes.value) } }));
      if (!data) return false;
      ctx.reload();
      showSecret(data.create_api_key.key);
      return true;
    },
  });
}

function revokeKeyDialog(ctx, key) {
  dialog({
    title: `Revoke the API key ${key.name}?`,
    body: h("p", {}, "Clients using it will fail on their next request."),
    ok: "Revoke",
    danger: true,
    submit: async () => {
      const data = await ctx.act(() => gql(
        "mutation($input: delete_api_key_input!) { delete_api_key(input: $input) { success } }",
        { input: { key_id: key.id } }));
      if (!data) return;
      if (!data.delete_api_key.success) throw new ApiError("That key was not found: it may already have been revoked.");
      flash(`The API key ${key.name} was revoked.`);
      ctx.reload();
    },
  });
}

function toggleKeyDialog(ctx, key) {
  const disable = !key.disabled;
  dialog({
    title: `${disable ? "Disable" : "Enable"} the API key ${key.name}?`,
    body: h("p", {}, disable
      ? "Clients using it will fail on their next request, as if it were revoked, until you enable it again."
      : "It works again from its next request."),
    ok: disable ? "Disable" : "Enable",
    danger: disable,
    submit: async () => {
      const op = disable ? "disable_api_key" : "enable_api_key";
      const data = await ctx.act(() => gql(
        `mutation($input: ${op}_input!) { ${op}(input: $input) { success } }`, { input: { key_id: key.id } }));
      if (!data) return;
      if (!data[op].success) throw new ApiError("That key was not found: it may have been revoked.");
      flash(`The API key ${key.name} was ${disable ? "disabled" : "enabled"}.`);
      ctx.reload();
    },
  });
}

function rotateKeyDialog(ctx, key) {
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
      const data = await ctx.act(() => gql(
        "mutation($input: rotate_api_key_input!) { rotate_api_key(input: $input) { id key old_key_expires_at } }",
        { input: { key_id: key.id, grace_period_seconds: Number(grace.value) } }));
      if (!data) return false;
      const until = data.rotate_api_key.old_key_expires_at;
      ctx.reload();
      showSecret(data.rotate_api_key.key,
        Number(grace.value) ? `The old key works until ${full(until)}.` : "The old key no longer works.");
      return true;
    },
  });
}

// Expires within 7 days (and not yet): shown in a warning colour, as the
// service's own warnings start then.
const expiresSoon = (iso) => {
  if (!iso) return false;
  const left = new Date(iso).getTime() - Date.now();
  return left > 0 && left < 7 * 86400 * 1000;
};

// The table of `keys` with their actions (null when there are none).
export function keysTable(ctx, keys, { showCreator = false } = {}) {
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
      h("td", {}, expiresSoon(k.expires_at) ? h("span", { class: "expiring", title: "Expires within 7 days: rotate it or make a new key" }, when(k.expires_at)) : when(k.expires_at),
        k.replaced_by && h("span", { class: "badge" }, "replaced"),
        k.disabled && h("span", { class: "badge warn" }, "disabled"),
        k.role_ceiling && h("span", { class: "badge", title: "The most this key may do" }, `at most ${roleLabel(k.role_ceiling.name)}`),
        k.allowed_networks && k.allowed_networks.length > 0 &&
          h("span", { class: "badge", title: `Usable from ${k.allowed_networks.join(", ")} only` }, `${k.allowed_networks.length} network${k.allowed_networks.length === 1 ? "" : "s"}`),
        k.scopes && k.scopes.length > 0 &&
          h("span", { class: "badge scopes", title: `Scopes: ${k.scopes.join(", ")}` }, k.scopes.length === 1 ? k.scopes[0] : `${k.scopes.length} scopes`),
        k.policy_violation && h("span", { class: "badge warn noncompliant", title: VIOLATIONS[k.policy_violation] || k.policy_violation }, "non-compliant"),
        k.leaked && h("span", { class: "badge warn leaked", title: "Reported leaked by secret scanning. It still works (the tenant's leak policy is to notify only): rotate or revoke it." }, "leaked")),
      h("td", { class: "hide-narrow" }, k.last_used ? when(k.last_used) : "Not yet"),
      h("td", { class: "hide-narrow mono" }, k.key_hint || ""),
      h("td", { class: "actions" }, can("delete:api_key") && [
        h("button", {
          type: "button", class: "icon toggle", title: `${k.disabled ? "Enable" : "Disable"} ${k.name}`,
          "aria-label": `${k.disabled ? "Enable" : "Disable"} the API key ${k.name}`,
          onclick: () => toggleKeyDialog(ctx, k),
        }, k.disabled ? playIcon() : pauseIcon()),
        !k.replaced_by && !k.disabled && h("button", {
          type: "button", class: "icon rotate", title: `Rotate ${k.name}`, "aria-label": `Rotate the API key ${k.name}`,
          onclick: () => rotateKeyDialog(ctx, k),
        }, rotateIcon()),
        h("button", {
          type: "button", class: "icon", title: `Revoke ${k.name}`, "aria-label": `Revoke the API key ${k.name}`,
          onclick: () => revokeKeyDialog(ctx, k),
        }, trash())])))));
}
