// DOM and time helpers: elements built from data (text is set as text,
// never as HTML), icons drawn from SVG paths, the flash line, and times
// shown relative to now with the full time in the tooltip.

export const $ = (id) => document.getElementById(id);

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// An icon drawn from SVG paths here: no icon font, no image request.
function icon(paths) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  for (const d of paths) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

// A trash bin; two arrows in a circle.
export const trash = () => icon(["M3 6h18", "M8 6V4h8v2", "M6 6l1 14h10l1-14", "M10 11v6", "M14 11v6"]);
// Two bars (disable); a triangle (enable).
export const pauseIcon = () => icon(["M9 5v14", "M15 5v14"]);
export const playIcon = () => icon(["M7 5l12 7-12 7z"]);
export const rotateIcon = () => icon(["M20 11a8 8 0 0 0-14.3-4.9L4 8", "M4 3v5h5", "M4 13a8 8 0 0 0 14.3 4.9L20 16", "M20 21v-5h-5"]);

let flashTimer = null;

export function flash(text, ok = true) {
  const el = $("flash");
  el.textContent = text;
  el.className = "flash " + (ok ? "ok" : "bad");
  el.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { el.hidden = true; }, 8000);
}

export const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
export const full = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "long" });

function relative(iso) {
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return rtf.format(Math.round(seconds / size), unit);
  }
  return rtf.format(Math.round(seconds), "second");
}

export const when = (iso) => (iso ? h("time", { datetime: iso, title: full(iso) }, relative(iso)) : "Never");

export const newestFirst = (a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0);
