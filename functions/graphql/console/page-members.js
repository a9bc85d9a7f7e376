// "Members": the people of the tenant and their roles; who may manage
// people (a human admin) changes roles and removes members here.

import { h, flash, trash, when } from "./dom.js";
import { ApiError } from "./api.js";
import { gql, me, can, roleLabel, membershipIn } from "./session.js";
import { dialog, confirm, onClose } from "./dialog.js";
import { roleSelect, roleById, roleByName } from "./roles.js";

function changeRole(ctx, person, membership, select, current) {
  const chosen = roleById(select.value);
  dialog({
    title: `Change ${person.username}'s role to ${chosen.label}?`,
    body: h("p", {}, "It applies on their very next request."),
    ok: "Change role",
    submit: async () => {
      const done = await ctx.act(() => gql(
        "mutation($input: set_membership_role_input!) { set_membership_role(input: $input) { id } }",
        { input: { membership_id: membership.id, role_id: chosen.id } }));
      if (!done) return;
      flash(`${person.username} is now ${chosen.label}.`);
      if (person.id === me.user_id) await ctx.refreshWhoami();
      ctx.reload();
    },
  });
  onClose(() => { select.value = roleByName(current).id; });
}

function removeMember(ctx, person, membership) {
  confirm({
    title: `Remove ${person.username}?`,
    text: `${person.username} will leave ${me.tenant.name}, and their API keys in it will be deleted.`,
    ok: "Remove",
    action: async () => {
      const done = await ctx.act(() => gql(
        "mutation($input: delete_membership_input!) { delete_membership(input: $input) { success error } }",
        { input: { membership_id: membership.id } }));
      if (!done) return;
      if (!done.delete_membership.success) throw new ApiError(done.delete_membership.error || "The member was not removed.");
      flash(`${person.username} was removed from ${me.tenant.name}.`);
      ctx.reload();
    },
  });
}

// Who invites: a person who is an admin of the tenant (the server decides;
// this only chooses what to show).
const invites = () => me.account_type === "USER" && me.role === "TENANT_ADMIN";

function invite(ctx) {
  const email = h("input", { id: "invite-email", type: "email", required: true, autocomplete: "off", spellcheck: "false",
    maxlength: "254" });
  const role = roleSelect("invite-role", "USER");
  dialog({
    title: "Invite a person",
    body: [h("label", { for: "invite-email" }, "Email"), email,
      h("p", { class: "hint" }, "They sign in with this email (verified by the identity provider) and accept within 7 days."),
      h("label", { for: "invite-role" }, "Role"), role],
    ok: "Invite",
    submit: async () => {
      const chosen = roleById(role.value);
      const done = await ctx.act(() => gql(
        "mutation($input: create_membership_invitation_input!) { create_membership_invitation(input: $input) { id } }",
        { input: { tenant_id: me.tenant_id, email: email.value.trim(), role: chosen.name } }));
      if (!done) return;
      flash(`${email.value.trim()} was invited as ${chosen.label}.`);
      ctx.reload();
    },
  });
}

function withdraw(ctx, invitation) {
  confirm({
    title: `Withdraw the invitation to ${invitation.email}?`,
    text: "They will no longer be able to join with it.",
    ok: "Withdraw",
    action: async () => {
      const done = await ctx.act(() => gql(
        "mutation($input: membership_invitation_id_input!) { delete_membership_invitation(input: $input) { success } }",
        { input: { invitation_id: invitation.id } }));
      if (!done) return;
      flash(`The invitation to ${invitation.email} was withdrawn.`);
      ctx.reload();
    },
  });
}

function pending(ctx, invitations) {
  const mine = invitations.filter((i) => i.tenant.id === me.tenant_id);
  return [
    h("div", { class: "toolbar" }, h("h2", {}, "Pending invitations"),
      h("button", { type: "button", id: "invite", onclick: () => invite(ctx) }, "Invite")),
    mine.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Email"), h("th", {}, "Role"),
          h("th", { class: "hide-narrow" }, "Expires"), h("th", { class: "actions" }, ""))),
        h("tbody", {}, mine.map((i) => h("tr", { "data-invitation": i.email },
          h("td", { class: "name", title: i.email }, i.email), h("td", {}, roleLabel(i.role)),
          h("td", { class: "hide-narrow" }, when(i.expires_at)),
          h("td", { class: "actions" }, h("button", { type: "button", class: "icon", "aria-label": `Withdraw the invitation to ${i.email}`,
            title: `Withdraw the invitation to ${i.email}`, onclick: () => withdraw(ctx, i) }, trash()))))))
      : h("p", { class: "empty" }, "No pending invitations."),
  ];
}

export default async function membersPage(root, ctx) {
  const query = invites()
    ? "{ user_view_same_tenant { id username email account_type memberships { id tenant_id role_detail { name } } } membership_invitation { id email role expires_at tenant { id } } }"
    : "{ user_view_same_tenant { id username email account_type memberships { id tenant_id role_detail { name } } } }";
  const data = await ctx.act(() => gql(query));
  if (!data) return;
  const people = data.user_view_same_tenant.filter((u) => u.account_type === "USER")
    .sort((a, b) => a.username.localeCompare(b.username));
  // The server says who manages people (a human admin).
  const manage = can("update:membership");
  const rows = people.map((person) => {
    const membership = membershipIn(person);
    const current = membership.role_detail.name;
    const cells = [h("td", { class: "name", title: person.username }, person.username,
      person.id === me.user_id ? h("span", { class: "badge" }, "you") : null),
      h("td", { class: "hide-narrow name" }, person.email || "")];
    if (!manage) return h("tr", { "data-member": person.username }, cells, h("td", {}, roleLabel(current)));
    const select = roleSelect(`role-${person.id}`, current);
    select.setAttribute("aria-label", `Role of ${person.username}`);
    select.addEventListener("change", () => changeRole(ctx, person, membership, select, current));
    const remove = h("button", { type: "button", class: "icon", "aria-label": `Remove ${person.username} from the tenant`,
      title: `Remove ${person.username}`, onclick: () => removeMember(ctx, person, membership) }, trash());
    return h("tr", { "data-member": person.username }, cells, h("td", {}, select), h("td", { class: "actions" }, remove));
  });
  root.replaceChildren(
    h("h1", {}, "Members"),
    h("p", { class: "hint" }, manage ? "The people of this tenant. Change a role or remove a member; it applies at once."
      : "The people of this tenant and their roles."),
    people.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Username"), h("th", { class: "hide-narrow" }, "Email"), h("th", {}, "Role"),
          manage && h("th", { class: "actions" }, ""))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, "No members."),
    ...(invites() ? pending(ctx, data.membership_invitation) : []));
}

