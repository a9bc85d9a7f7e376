// The GraphQL client: every action is a call to the public API, the same a
// script would make. Who it acts as comes from an injected credential
// provider (an API key, or a person's session): a function answering the
// `Authorization` header value (or a promise of it), or null.

export class ApiError extends Error {}

const SAYS = {
  FORBIDDEN: "You don't have permission to do this.",
  SERVICE_UNAVAILABLE: "The service is briefly unavailable. Nothing was changed; try again in a moment.",
  OUTCOME_UNKNOWN: "The service could not confirm whether this was done. Reload the page to see before trying again.",
  QUERY_TOO_COMPLEX: "The request was too large for the service.",
  INTERNAL_SERVER_ERROR: "The service failed to do this. Try again; if it keeps failing, tell your operator.",
};

// Codes whose message from the API says what happened (input, permission,
// availability); for the others the console's own words, never internals.
const OWN_WORDS = ["BAD_USER_INPUT", "FORBIDDEN", "SERVICE_UNAVAILABLE", "OUTCOME_UNKNOWN", "MEMBER_BUSY", "RATE_LIMITED",
  "ANSWER_TOO_LARGE"];

const sentence = (text) => {
  const s = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(s) ? s : s + ".";
};

// A client whose requests carry what `credential()` answers. Errors are
// thrown as ApiError; an UNAUTHENTICATED answer as one with
// `unauthenticated` set.
export function createClient(credential) {
  return async function gql(query, variables) {
    const authorization = await credential();
    let response;
    try {
      response = await fetch("graphql", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(authorization ? { Authorization: authorization } : {}) },
        body: JSON.stringify({ query, variables: variables || {} }),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch (e) {
      throw new ApiError("Could not reach the service. Check your connection and try again.");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { /* answered below */ }
    const error = body && body.errors && body.errors[0];
    // The gateway's throttle has no GraphQL body; the member's change limit has.
    if (response.status === 429 && !error) throw new ApiError("Too many requests right now. Wait a moment and try again.");
    if (error) {
      const code = (error.extensions && error.extensions.code) || "";
      if (code === "UNAUTHENTICATED") {
        // The server's words, kept for the sign-in page (never a secret).
        const e = new ApiError(error.message || "unauthenticated");
        e.unauthenticated = true;
        e.reason = (error.extensions && error.extensions.reason) || "";
        throw e;
      }
      const own = OWN_WORDS.includes(code) && error.message;
      throw new ApiError(own ? sentence(error.message) : (Object.hasOwn(SAYS, code) ? SAYS[code] : "The request failed."));
    }
    if (!response.ok || !body || !body.data) {
      throw new ApiError(response.status >= 500 ? SAYS.SERVICE_UNAVAILABLE : `The service answered HTTP ${response.status}.`);
    }
    return body.data;
  };
}
