// The role picker: the roles the server lists, with their ids.

import { h } from "./dom.js";
import { me } from "./session.js";

export function roleSelect(id, selected) {
  return h("select", { id }, me.roles.map((r) => h("option", { value: r.id, selected: r.name === selected }, r.label)));
}

export const roleById = (id) => me.roles.find((r) => r.id === id);
export const roleByName = (name) => me.roles.find((r) => r.name === name);
