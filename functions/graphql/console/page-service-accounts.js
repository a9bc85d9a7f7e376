// "Service Accounts": the tenant's accounts for CI jobs, agents and other
// services, each with its keys. The route's parameter is the account shown
// open (`#service-accounts/<id>`).

import { h, flash, trash, newestFirst } from "./dom.js";
import { ApiError } from "./api.js";
import { gql, can, roleLabel, membershipIn } from "./session.js";
import { dialog, confirm } from "./dialog.js";
import { KEY_FIELDS, keysTable, createKeyDialog } from "./keys-ui.js";
import { roleSelect } from "./roles.js";

function addServiceAccountDialog(ctx) {
  const name = h("input", { id: "sa-name", required: true, maxlength: 255, autocomplete: "off" });
  const role = roleSelect("sa-role", "TENANT_ADMIN");
  dialog({
    title: "Add service account",
    ok: "Add",
    body: [h("label", { for: "sa-name" }, "Name"), name, h("label", { for: "sa-role" }, "Role"), role],
    submit: async () => {
      const label = name.value.trim();
      if (!label) throw new ApiError("Give the service account a name.");
      const data = await ctx.act(() => gql(
        "mutation($input: create_service_account_input!) { create_service_account(input: $input) { id } }",
        { input: { name: label, role_id: role.value } }));
      if (!data) return;
      flash(`The service account ${label} was added. Create an API key for it below.`);
      ctx.navigate("service-accounts", data.create_service_account.id);
    },
  });
}

function removeDialog(ctx, account) {
  confirm({
    title: `Remove ${account.username}?`,
    text: `${account.username} and all of its API keys will be deleted.`,
    ok: "Remove",
    action: async () => {
      const done = await ctx.act(() => gql(
        "mutation($input: delete_service_account_input!) { delete_service_account(input: $input) { success error } }",
        { input: { user_id: account.id } }));
      if (!done) return;
      if (!done.delete_service_account.success) throw new ApiError(done.delete_service_account.error || "The service account was not removed.");
      flash(`The service account ${account.username} was removed.`);
      ctx.reload();
    },
  });
}

export default async function serviceAccountsPage(root, ctx) {
  if (!can("create:service_account")) {
    root.replaceChildren(h("h1", {}, "Service Accounts"),
      h("p", { class: "empty" }, "You don't have permission to manage service accounts. Ask an administrator of this tenant."));
    return;
  }
  const data = await ctx.act(() => gql(`{ user_view_same_tenant { id username account_type memberships { id tenant_id role_detail { name } } }
    auth_api_key { ${KEY_FIELDS} } }`));
  if (!data) return;
  const accounts = data.user_view_same_tenant.filter((u) => u.account_type === "SERVICE")
    .sort((a, b) => a.username.localeCompare(b.username));
  const open = ctx.params[0] || null;
  const rows = accounts.map((account) => {
    const keys = data.auth_api_key.filter((k) => k.user_id === account.id).sort(newestFirst);
    const expanded = open === account.id;
    const toggle = h("button", { type: "button", class: "link", "aria-expanded": String(expanded),
      onclick: () => (expanded ? ctx.navigate("service-accounts") : ctx.navigate("service-accounts", account.id)) },
    `${expanded ? "▾" : "▸"} ${account.username}`);
    const remove = h("button", { type: "button", class: "icon", "aria-label": `Remove the service account ${account.username}`,
      title: `Remove ${account.username}`, onclick: () => removeDialog(ctx, account) }, trash());
    const main = h("tr", { "data-account": account.username },
      h("td", { class: "name" }, toggle), h("td", {}, roleLabel(membershipIn(account).role_detail.name)),
      h("td", { class: "hide-narrow" }, `${keys.length} key${keys.length === 1 ? "" : "s"}`), h("td", { class: "actions" }, remove));
    if (!expanded) return [main];
    const detail = h("tr", {}, h("td", { colspan: 4 }, h("div", { class: "nested" },
      h("div", { class: "toolbar" }, h("strong", {}, `Keys of ${account.username}`),
        h("button", { type: "button", onclick: () => createKeyDialog(ctx, account.id) }, "Create API key")),
      keysTable(ctx, keys, { showCreator: true }) ||
        h("p", { class: "empty" }, "No keys yet. Create one to let this service account authenticate."))));
    return [main, detail];
  });
  root.replaceChildren(
    h("h1", {}, "Service Accounts"),
    h("p", { class: "hint" }, "Accounts for CI jobs, agents and other services, with their own API keys."),
    h("div", { class: "toolbar" }, h("span", {}),
      h("button", { type: "button", id: "add-service-account", onclick: () => addServiceAccountDialog(ctx) }, "Add service account")),
    accounts.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Role"), h("th", { class: "hide-narrow" }, "Keys"),
          h("th", { class: "actions" }, ""))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No service accounts yet. Add one, then create an API key for it."));
}
