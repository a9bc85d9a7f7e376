// The dialog component: one <dialog> in the page, opened with a title, a
// body and what OK does. A closed dialog keeps nothing, the secret it
// showed least of all.

import { $, h, ZONE, full } from "./dom.js";
import { ApiError } from "./api.js";

// Opens the dialog; `submit` runs on OK and closes it unless it throws (its
// message is shown) or returns true (it opened the dialog anew).
export function dialog({ title, body, ok = "OK", danger = false, cancel = "Cancel", submit }) {
  const d = $("dialog");
  $("dialog-title").textContent = title;
  $("dialog-body").replaceChildren(...[].concat(body).filter((c) => c !== null && c !== undefined && c !== false));
  const error = $("dialog-error");
  error.hidden = true;
  const okButton = $("dialog-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "danger" : "";
  okButton.hidden = !submit;
  okButton.disabled = false;
  const cancelButton = $("dialog-cancel");
  cancelButton.textContent = cancel;
  $("dialog-form").onsubmit = async (event) => {
    event.preventDefault();
    if (!submit) return d.close();
    okButton.disabled = true;
    try {
      if (!(await submit()) && d.open) d.close();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      okButton.disabled = false;
    }
  };
  cancelButton.onclick = () => d.close();
  d.showModal();
  const first = d.querySelector("#dialog-body input, #dialog-body select, #dialog-body button") || (submit ? okButton : cancelButton);
  first.focus();
}

// Runs `then` once when the dialog next closes.
export const onClose = (then) => $("dialog").addEventListener("close", then, { once: true });

export function clearOnClose() {
  $("dialog").addEventListener("close", () => {
    $("dialog-body").replaceChildren();
    $("dialog-title").textContent = "";
  });
}

// A confirmation whose OK runs `action` (which throws to say why not).
export function confirm({ title, text, ok, danger = true, action }) {
  dialog({ title, body: h("p", {}, text), ok, danger, submit: action });
}

// Shows a new key's secret, once.
export function showSecret(key, note) {
  const field = h("input", { id: "new-key", readonly: true, value: key, "aria-label": "The new API key", class: "mono" });
  const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await navigator.clipboard.writeText(key);
    } catch (e) {
      field.select();
      document.execCommand("copy");
    }
    copy.textContent = "Copied";
  } }, "Copy");
  dialog({
    title: "Your new API key",
    body: [
      h("p", {}, "Copy this key and keep it somewhere safe. You won't be able to see it again once you close this dialog."),
      h("div", { class: "secret" }, field, copy),
      note && h("p", { class: "hint", id: "secret-note" }, note),
    ],
    cancel: "Close",
  });
  field.select();
}

// A local date and time input read as a future instant (or null when blank).
export function expiryField() {
  const input = h("input", { id: "key-expires", type: "datetime-local", step: 60 });
  const read = () => {
    if (!input.value) return null;
    const at = new Date(input.value); // datetime-local is read in the browser's zone
    if (Number.isNaN(at.getTime())) throw new ApiError("That expiration is not a date and time.");
    if (at.getTime() <= Date.now()) throw new ApiError("The expiration is in the past. Choose a later time, or leave it blank.");
    return at.toISOString();
  };
  const hint = h("p", { class: "hint" }, `In your time zone, ${ZONE}. Leave blank for a key that never expires.`);
  return { input, hint, read };
}

export { full };
