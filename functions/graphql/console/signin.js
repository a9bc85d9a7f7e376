// Signing in with the identity provider: the authorization code flow with
// PKCE (S256), a `state` checked on return and a `nonce` checked in the ID
// token, then the provider's ID token exchanged for this service's session
// (`log_in`). What the flow keeps between the two pages (state, nonce,
// verifier) is in this tab's sessionStorage only, and gone once used; the
// code leaves the address bar at once.

import { createClient } from "./api.js";

const FLOW = "apikeys.oidc";
const nobody = createClient(() => null);

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

// What the deployment says about its identity provider ({ enabled: false }
// when it has none, or cannot be asked).
export async function settings() {
  try {
    const data = await nobody("{ sign_in_settings { enabled provider_name client_id authorize_url token_url } }");
    const s = data.sign_in_settings;
    return s.enabled && s.authorize_url && s.token_url ? s : { enabled: false };
  } catch (e) {
    return { enabled: false };
  }
}

// Is this page the provider's redirect back (a code or an error, with a state)?
export const returning = () => new URLSearchParams(location.search).has("state");

// Sends the browser to the provider's sign-in page.
export async function begin(s) {
  const flow = { state: random(32), nonce: random(32), verifier: random(48), redirect: location.origin + location.pathname };
  sessionStorage.setItem(FLOW, JSON.stringify(flow));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(flow.verifier));
  const url = new URL(s.authorize_url);
  url.search = new URLSearchParams({
    response_type: "code", client_id: s.client_id, redirect_uri: flow.redirect, scope: "openid email profile",
    state: flow.state, nonce: flow.nonce, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

function claimsOf(idToken) {
  const part = (idToken.split(".")[1] || "").replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(part + "===".slice((part.length + 3) % 4)), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// The provider's answer on return: its ID token, after the state and the
// nonce are checked (throws with what to do otherwise).
export async function finish(s) {
  const params = new URLSearchParams(location.search);
  history.replaceState(null, "", location.pathname);
  const flow = JSON.parse(sessionStorage.getItem(FLOW) || "null");
  sessionStorage.removeItem(FLOW);
  if (params.get("error")) {
    throw new Error(`The identity provider did not sign you in (${params.get("error_description") || params.get("error")}). Try again.`);
  }
  if (!flow || params.get("state") !== flow.state) {
    throw new Error("This sign-in was not started in this tab, or was already used. Start again.");
  }
  let tokens = null;
  try {
    const response = await fetch(s.token_url, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", client_id: s.client_id, code: params.get("code") || "",
        redirect_uri: flow.redirect, code_verifier: flow.verifier }),
      credentials: "omit",
      cache: "no-store",
    });
    tokens = response.ok ? await response.json() : null;
  } catch (e) {
    throw new Error("Could not reach the identity provider. Check your connection and start again.");
  }
  if (!tokens || !tokens.id_token) throw new Error("The identity provider did not complete the sign-in. Start again.");
  let claims = null;
  try { claims = claimsOf(tokens.id_token); } catch (e) { /* refused below */ }
  if (!claims || claims.nonce !== flow.nonce) throw new Error("The identity provider's answer is not for this sign-in. Start again.");
  return tokens.id_token;
}

// This service's session for the provider's ID token: { access_token,
// refresh_token, expires_at, tenant_id }, or an error whose `reason` says
// why not (`not_a_member`: nobody invited this person).
export async function exchange(idToken) {
  const data = await nobody(
    "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token refresh_token expires_at tenant_id } }", { t: idToken });
  return data.log_in;
}
