// "Audit log": every change in the tenant, newest first, a page at a time.

import { h, flash, when } from "./dom.js";
import { gql, can } from "./session.js";

const ACTIONS = {
  KEY_CREATED: "API key created", KEY_ROTATED: "API key rotated", KEY_REVOKED: "API key revoked",
  KEY_EXPIRED: "Expired API key removed", KEY_DISABLED: "API key disabled", KEY_ENABLED: "API key enabled", SERVICE_ACCOUNT_CREATED: "Service account created",
  SERVICE_ACCOUNT_REMOVED: "Service account removed", MEMBER_ADDED: "Member added", ROLE_CHANGED: "Role changed",
  MEMBER_REMOVED: "Member removed", TENANT_CREATED: "Tenant created", KEY_POLICY_CHANGED: "Key policy changed", KEY_LEAKED: "API key reported leaked",
  INVITATION_CREATED: "Invitation sent", INVITATION_ACCEPTED: "Invitation accepted", INVITATION_WITHDRAWN: "Invitation withdrawn",
};
const AUDIT_FIELDS = "id cursor at action actor_user_id actor_key_id actor_name actor_type target_type target_id target_name detail";
const PAGE = 50;

export default async function auditPage(root, ctx) {
  if (!can("read:audit_log")) {
    root.replaceChildren(h("h1", {}, "Audit log"),
      h("p", { class: "empty" }, "You don't have permission to read the audit log. Ask an administrator of this tenant."));
    return;
  }
  const body = h("tbody", {});
  const more = h("button", { type: "button", class: "secondary", id: "audit-more" }, "Load older");
  let before = null;
  const load = async () => {
    more.disabled = true;
    const data = await ctx.act(() => gql(`query($before: String) { audit_log(limit: ${PAGE}, before: $before) { ${AUDIT_FIELDS} } }`,
      { before }));
    if (!data) return;
    const page = data.audit_log;
    body.append(...page.map((r) => h("tr", { "data-action": r.action },
      h("td", {}, when(r.at)),
      h("td", {}, ACTIONS[r.action] || r.action),
      h("td", { class: "name" }, r.actor_name, r.actor_type === "SERVICE" && h("span", { class: "badge" }, "service account"), r.actor_key_id && h("span", { class: "hint mono hide-narrow", title: `API key ${r.actor_key_id}` }, ` key ${r.actor_key_id.slice(0, 8)}`)),
      h("td", { class: "name" }, r.target_name || r.target_id),
      h("td", { class: "hide-narrow" }, r.detail || ""))));
    before = page.length ? page[page.length - 1].cursor : before;
    more.hidden = page.length < PAGE;
    more.disabled = false;
    if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "Nothing has happened in this tenant yet.")));
  };
  root.replaceChildren(
    h("h1", {}, "Audit log"),
    h("p", { class: "hint" }, "Every change to keys, service accounts and members of this tenant, newest first. Records are kept for the retention your operator set."),
    h("table", { class: "audit" }, h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "What"), h("th", {}, "By"), h("th", {}, "On"),
      h("th", { class: "hide-narrow" }, "Detail"))), body),
    h("div", { class: "toolbar" }, h("span", {}), more));
  more.addEventListener("click", () => load().catch((e) => flash(e.message, false)));
  await load();
}
