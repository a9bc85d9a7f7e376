// The router: `#<page>/<param>/...` names a page and its parameters (the
// service account shown open, say). Only the pages' own names route:
// "#__proto__" and the like show the default page.

export function createRouter(pages, fallback) {
  const table = new Map(Object.entries(pages));
  return {
    // The page and parameters the address names now.
    current() {
      const [name, ...params] = location.hash.slice(1).split("/").map((part) => {
        try { return decodeURIComponent(part); } catch (e) { return ""; }
      });
      return table.has(name) ? { name, page: table.get(name), params } : { name: fallback, page: table.get(fallback), params: [] };
    },
    // Goes to `name` with `params` (a new history entry).
    href: (name, ...params) => "#" + [name, ...params].map(encodeURIComponent).join("/"),
  };
}
