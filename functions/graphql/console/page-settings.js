// "Settings": the tenant's key policy, the rules every key must meet when
// it is made and at every use. Every member reads it (to make keys that
// meet it); human administrators change it.

import { h, flash } from "./dom.js";
import { ApiError } from "./api.js";
import { gql, can } from "./session.js";

const FIELDS = "max_user_key_days max_service_key_days scopes_required allowed_networks leak_action applied";
const LEAK = { REVOKE: "Revoked at once", NOTIFY: "Kept working, marked leaked and recorded" };

// A number of days as typed: blank is no limit.
function days(input, what) {
  const text = input.value.trim();
  if (!text) return null;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 366) throw new ApiError(`${what} must be a whole number of days from 1 to 366, or blank for no limit.`);
  return n;
}

const shown = (d) => (d ? `${d} day${d === 1 ? "" : "s"}` : "No limit");

export default async function settingsPage(root, ctx) {
  const data = await ctx.act(() => gql(`{ key_policy { ${FIELDS} } }`));
  if (!data) return;
  const policy = data.key_policy;
  const intro = h("p", { class: "hint" }, "Rules every API key of this tenant must meet, when it is made and at every request. A key made before a rule was tightened is refused (not deleted) and shown as non-compliant; it works again if the rule is loosened.");
  const pending = policy.applied ? "" : h("p", { class: "error", role: "alert", id: "policy-pending" }, "The last change did not reach every key. Save the policy again to finish it.");
  if (!can("update:key_policy")) {
    root.replaceChildren(h("h1", {}, "Settings"), h("h2", {}, "Key policy"), intro, pending,
      h("dl", { class: "policy", id: "policy-view" },
        h("dt", {}, "People's keys live at most"), h("dd", {}, shown(policy.max_user_key_days)),
        h("dt", {}, "Service accounts' keys live at most"), h("dd", {}, shown(policy.max_service_key_days)),
        h("dt", {}, "Scopes required"), h("dd", {}, policy.scopes_required ? "Yes" : "No"),
        h("dt", {}, "Allowed networks"), h("dd", {}, policy.allowed_networks.length ? policy.allowed_networks.join(", ") : "Anywhere"),
        h("dt", {}, "A key reported leaked"), h("dd", {}, LEAK[policy.leak_action] || policy.leak_action)),
      h("p", { class: "hint" }, "Only a person who is an administrator of this tenant may change these rules."));
    return;
  }
  const user = h("input", { id: "policy-user-days", type: "number", min: 1, max: 366, step: 1, inputmode: "numeric", value: policy.max_user_key_days ?? "" });
  const service = h("input", { id: "policy-service-days", type: "number", min: 1, max: 366, step: 1, inputmode: "numeric", value: policy.max_service_key_days ?? "" });
  const scopes = h("input", { id: "policy-scopes", type: "checkbox", checked: policy.scopes_required });
  const networks = h("input", { id: "policy-networks", autocomplete: "off", spellcheck: "false", value: policy.allowed_networks.join(", "), placeholder: "e.g. 203.0.113.0/24, 2001:db8::/32" });
  const leak = h("select", { id: "policy-leak" }, Object.entries(LEAK).map(([value, label]) =>
    h("option", { value, selected: policy.leak_action === value }, label)));
  const error = h("p", { class: "error", role: "alert", hidden: true, id: "policy-error" });
  const save = h("button", { type: "submit", id: "policy-save" }, "Save the key policy");
  // Checked here, with words (the browser's own check would stop the form
  // without them).
  const form = h("form", { id: "policy-form", class: "form", novalidate: true },
    h("label", { for: "policy-user-days" }, "People's keys live at most (days)"), user,
    h("label", { for: "policy-service-days" }, "Service accounts' keys live at most (days)"), service,
    h("p", { class: "hint" }, "1 to 366 days; blank: no limit. A new key must then have an expiration within the limit."),
    h("label", { class: "check", for: "policy-scopes" }, scopes, " Every key must carry scopes"),
    h("label", { for: "policy-networks" }, "Allowed networks for every key (optional)"), networks,
    h("p", { class: "hint" }, "Addresses or CIDRs, separated by commas or spaces; the address you use now must be among them. Blank: anywhere."),
    h("label", { for: "policy-leak" }, "A key reported leaked by secret scanning is"), leak,
    h("p", { class: "hint" }, "GitHub reports our keys found in public code. Revoking at once is the safe choice; keeping them working only records the report."),
    error, h("div", { class: "toolbar" }, h("span", {}), save));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    save.disabled = true;
    try {
      const input = {
        max_user_key_days: days(user, "People's keys' lifetime"),
        max_service_key_days: days(service, "Service accounts' keys' lifetime"),
        scopes_required: scopes.checked,
        allowed_networks: networks.value.split(/[\s,]+/).filter((n) => n),
        leak_action: leak.value,
      };
      const saved = await ctx.act(() => gql(
        `mutation($input: set_key_policy_input!) { set_key_policy(input: $input) { ${FIELDS} } }`, { input }));
      if (!saved) return;
      flash("The key policy was saved. Every key of the tenant is held to it from now on.");
      ctx.reload();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      save.disabled = false;
    }
  });
  root.replaceChildren(h("h1", {}, "Settings"), h("h2", {}, "Key policy"), intro, pending, form);
}
