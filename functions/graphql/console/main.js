// The apikeys console: the shell (sign-in, who is signed in, navigation)
// around one page module per section. Every action is a call to the
// public GraphQL API, the same a script would make; text from the API is
// set as text, never as HTML.

import { $, h, flash } from "./dom.js";
import { load, end, me, roleLabel, apiKeyCredential } from "./session.js";
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
      signedOut(STOPPED);
      return undefined;
    }
    throw e;
  }
}

function showWhoami() {
  $("whoami").replaceChildren(h("span", {},
    h("strong", {}, me.username), me.account_type === "SERVICE" && h("span", { class: "badge" }, "service account"),
    " · ", me.tenant.name, " (", h("span", { class: "mono" }, me.tenant.slug), ") · ", roleLabel(me.role)));
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
  for (const id of ["whoami", "sign-out", "nav", "page"]) $(id).hidden = true;
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
  for (const id of ["whoami", "sign-out", "nav", "page"]) $(id).hidden = false;
  showWhoami();
  render();
}

async function signIn(key) {
  await load(key);
  // The page keeps the key nowhere else, the hidden sign-in field least of all.
  $("sign-in-key").value = "";
  showConsole();
}

function start() {
  $("loading").remove();
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
  clearOnClose();
  window.addEventListener("hashchange", render);
  if (!apiKeyCredential.present()) return showSignIn(null);
  load().then(showConsole).catch((e) => signedOut(e.unauthenticated ? STOPPED : e.message));
}

// A module runs after the document is parsed.
start();
