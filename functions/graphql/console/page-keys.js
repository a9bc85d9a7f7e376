// "API Keys": the signed-in person's own keys in this tenant.

import { h, newestFirst } from "./dom.js";
import { gql, me, can } from "./session.js";
import { KEY_FIELDS, keysTable, createKeyDialog } from "./keys-ui.js";

export default async function keysPage(root, ctx) {
  const data = await ctx.act(() => gql(`{ auth_api_key(order_by: [{created: desc}]) { ${KEY_FIELDS} } }`));
  if (!data) return;
  const mine = data.auth_api_key.filter((k) => k.user_id === me.user_id).sort(newestFirst);
  const search = h("input", { type: "search", id: "key-search", placeholder: "Search by name", "aria-label": "Search keys by name" });
  const list = h("div", {});
  const draw = () => {
    const term = search.value.trim().toLowerCase();
    const shown = mine.filter((k) => k.name.toLowerCase().includes(term));
    list.replaceChildren(keysTable(ctx, shown) ||
      h("p", { class: "empty" }, mine.length ? "No key matches this search." :
        "You have no API keys in this tenant yet. Create one to authenticate a client, a CI job or the Prefect CLI."));
  };
  search.addEventListener("input", draw);
  draw();
  root.replaceChildren(
    h("h1", {}, "API Keys"),
    h("p", { class: "hint" }, `Your keys in ${me.tenant.name}. A key's secret is shown once, when it is created.`),
    h("div", { class: "toolbar" }, search,
      can("create:api_key") && h("button", { type: "button", id: "create-key", onclick: () => createKeyDialog(ctx, me.user_id) }, "Create an API key")),
    list);
}
