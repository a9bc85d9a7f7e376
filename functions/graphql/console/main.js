// The apikeys console: the shell (sign-in, who is signed in, navigation)
// around one page module per section. Every action is a call to the
// public GraphQL API, the same a script would make; text from the API is
// set as text, never as HTML.

import { $, h, flash, when } from "./dom.js";
import { load, end, me, roleLabel, apiKeyCredential, sessionCredential, switchTenant, gql } from "./session.js";
import { settings, returning, begin, finish, exchange } from "./signin.js";
import { clearOnClose } from "./dialog.js";
import { createRouter } from "./router.js";
import keysPage from "./page-keys.js";
import serviceAccountsPage from "./page-service-accounts.js";
import membersPage from "./page-members.js";
import auditPage from "./page-audit.js";
import settingsPage from "./page-settings.js";

const router = createRouter(
  { keys: keysPage, "service-accounts": serviceAccountsPage, members: membersPage, audit: auditPage, settings: settingsPage },
  "keys");

const STOPPED = "Your API key stopped working: it may have been revoked, have expired, or its owner been removed from the tenant. Sign in with another key.";
const ENDED = "Your session has ended (you signed out elsewhere, it expired, or your role or membership changed). Sign in again.";

// What stopping says: a key that stopped, or a session that ended.
const stopped = () => (sessionCredential.present() ? ENDED : STOPPED);

function signedOut(message) {
  end();
  showSignIn(message);
}

// Runs an API call as the signed-in person: a key that stopped working
// signs out with why (the call then answers undefined).
async function act(fn) {
  try {
    return await fn();
  } catch (e) {
    if (e.unauthenticated) {
      signedOut(stopped());
      return undefined;
    }
    throw e;
  }
}

function showWhoami() {
  $("whoami").replaceChildren(h("span", {},
    h("strong", {}, me.username), me.account_type === "SERVICE" && h("span", { class: "badge" }, "service account"),
    " · ", me.tenant.name, " (", h("span", { class: "mono" }, me.tenant.slug), ") · ", roleLabel(me.role)));
  // A person in several tenants switches between them here.
  const select = $("tenant-switch");
  const many = me.person && me.tenants.length > 1;
  $("tenant-switch-label").hidden = !many;
  select.replaceChildren(...(many ? me.tenants.map((t) => h("option", { value: t.id, selected: t.id === me.tenant_id },
    `${t.name} (${roleLabel(t.role)})`)) : []));
}

async function switchTo(tenantId) {
  try {
    await switchTenant(tenantId);
    await load();
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    showConsole();
    flash(`You are now in ${me.tenant.name}.`);
  } catch (e) {
    if (e.unauthenticated) return signedOut(stopped());
    flash(e.message, false);
    showWhoami();
  }
}

async function refreshWhoami() {
  if (await act(() => load())) showWhoami();
}

// Renders started; only the latest one draws (an earlier one that answers
// later, after a quick click elsewhere, is dropped).
let rendering = 0;

async function render() {
  if (!me) return;
  const mine = ++rendering;
  const { name, page, params } = router.current();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  // Drawn apart, then shown if still the latest.
  const root = h("div", {});
  const ctx = {
    params,
    act,
    reload: render,
    refreshWhoami,
    // Goes to a page (the same address draws the page again).
    navigate: (to, ...args) => {
      const href = router.href(to, ...args);
      if (location.hash === href) render(); else location.hash = href;
    },
  };
  try {
    await page(root, ctx);
  } catch (e) {
    root.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
  }
  if (mine === rendering && me) $("page").replaceChildren(...root.childNodes);
}

function showSignIn(message) {
  for (const id of ["whoami", "sign-out", "nav", "page", "welcome", "tenant-switch-label", "invitations"]) $(id).hidden = true;
  // The next person to sign in in this tab sees nothing of the last one:
  // not their page, not their address, not a dialog left open.
  rendering += 1;
  $("page").replaceChildren();
  $("whoami").replaceChildren();
  if ($("dialog").open) $("dialog").close();
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("sign-in-key").value = "";
  $("sign-in-key").focus();
}

function showConsole() {
  $("sign-in").hidden = true;
  $("welcome").hidden = true;
  for (const id of ["whoami", "sign-out", "nav", "page"]) $(id).hidden = false;
  showWhoami();
  render();
  showInvitations();
}

// Invitations to other tenants waiting for the person signed in: a line
// above the page, each to accept (then into that tenant).
async function showInvitations() {
  const banner = $("invitations");
  banner.hidden = true;
  banner.replaceChildren();
  if (!me || !me.person) return;
  let data;
  try {
    data = await gql("{ membership_invitation { id role tenant { id name } } }");
  } catch (e) {
    return;
  }
  const others = data.membership_invitation.filter((i) => i.tenant.id !== me.tenant_id
    && !me.tenants.some((t) => t.id === i.tenant.id));
  if (!others.length || !me) return;
  banner.replaceChildren(...others.map((i) => {
    const button = h("button", { type: "button", class: "secondary", "aria-label": `Accept the invitation to ${i.tenant.name}` },
      "Accept");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await gql("mutation($i: UUID!) { accept_membership_invitation(input: {invitation_id: $i}) { id } }", { i: i.id });
        await switchTo(i.tenant.id);
      } catch (e) {
        button.disabled = false;
        if (e.unauthenticated) return signedOut(stopped());
        flash(e.message, false);
      }
    });
    return h("div", { class: "invitation", "data-invitation": i.tenant.name },
      h("span", {}, "You are invited to ", h("strong", {}, i.tenant.name), ` as ${roleLabel(i.role)}.`), button);
  }));
  banner.hidden = false;
}

async function signIn(key) {
  await load(key);
  // The page keeps the key nowhere else, the hidden sign-in field least of all.
  $("sign-in-key").value = "";
  showConsole();
}

// A person signed in whom no tenant has taken in yet: the invitations
// addressed to their verified email, each to accept (then into that tenant).
async function showWelcome() {
  for (const id of ["whoami", "nav", "page", "sign-in", "tenant-switch-label", "invitations"]) $(id).hidden = true;
  $("sign-out").hidden = false;
  const card = $("welcome");
  card.hidden = false;
  card.replaceChildren(h("p", { class: "hint" }, "Loading your invitations…"));
  let data;
  try {
    data = await gql("{ membership_invitation { id email role tenant { id name slug } invited_by expires_at } }");
  } catch (e) {
    if (e.unauthenticated) return signedOut(ENDED);
    card.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    return;
  }
  const invitations = data.membership_invitation;
  const accept = async (invitation, button) => {
    button.disabled = true;
    try {
      await gql("mutation($i: UUID!) { accept_membership_invitation(input: {invitation_id: $i}) { id tenant_id } }",
        { i: invitation.id });
      await switchTenant(invitation.tenant.id);
      await load();
      showConsole();
      flash(`Welcome to ${invitation.tenant.name}. Create your API keys here, in API Keys.`);
    } catch (e) {
      button.disabled = false;
      if (e.unauthenticated) return signedOut(ENDED);
      flash(e.message, false);
    }
  };
  card.replaceChildren(
    h("h1", {}, "Your invitations"),
    invitations.length
      ? h("p", {}, "You have been invited to join:")
      : h("p", {}, "You have no pending invitations any more. Ask an admin of your team to invite you again."),
    ...invitations.map((i) => {
      const button = h("button", { type: "button", "aria-label": `Accept the invitation to ${i.tenant.name}` }, "Accept");
      button.addEventListener("click", () => accept(i, button));
      return h("div", { class: "invitation", "data-invitation": i.tenant.slug },
        h("span", {}, h("strong", {}, i.tenant.name), ` as ${roleLabel(i.role)}, invited by ${i.invited_by} · expires `, when(i.expires_at)),
        button);
    }));
}

// A person the provider vouched for, whom nobody invited: why they cannot
// enter, in the server's words (which name the email to invite).
function showNotMember(message) {
  showSignIn(null);
  $("sign-in").hidden = true;
  const card = $("welcome");
  card.hidden = false;
  const again = h("button", { type: "button", class: "secondary" }, "Sign in as someone else");
  again.addEventListener("click", () => showSignIn(null));
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  card.replaceChildren(h("h1", {}, "Not a member yet"), h("p", { id: "not-member", role: "alert" }, text.endsWith(".") ? text : text + "."),
    again);
}

async function signInWithProvider(s) {
  try {
    const idToken = await finish(s);
    const tokens = await exchange(idToken);
    sessionCredential.keep(tokens);
  } catch (e) {
    if (e.reason === "not_a_member") return showNotMember(e.message);
    return showSignIn(e.unauthenticated ? `You could not be signed in: ${e.message}` : e.message);
  }
  return enter();
}

// Shows what the credential in this tab opens: the console, a person's
// invitations, or the sign-in page.
function enter() {
  if (sessionCredential.present() && !apiKeyCredential.present() && !sessionCredential.inTenant()) return showWelcome();
  if (!apiKeyCredential.present() && !sessionCredential.present()) return showSignIn(null);
  return load().then(showConsole).catch((e) => signedOut(e.unauthenticated ? stopped() : e.message));
}

async function start() {
  $("loading").remove();
  const provider = await settings();
  if (provider.enabled) {
    $("provider-sign-in").hidden = false;
    $("provider-button").textContent = `Sign in with ${provider.provider_name || "your identity provider"}`;
    $("provider-button").addEventListener("click", () => begin(provider));
    $("key-sign-in").open = false;
  }
  $("tenant-switch").addEventListener("change", (event) => switchTo(event.target.value));
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
    const person = sessionCredential.present() && !apiKeyCredential.present();
    signedOut(null);
    flash(person ? "You are signed out: your session was ended." : "You are signed out. The key was forgotten by this tab.");
  });
  clearOnClose();
  window.addEventListener("hashchange", render);
  if (provider.enabled && returning()) return signInWithProvider(provider);
  return enter();
}

// A module runs after the document is parsed.
start();
