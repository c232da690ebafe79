// Which Circle nodes this page may connect to: the join link's `nodes=` list (else this
// page's own origin, e.g. a load balancer), then the nodes the server lists in `config`.

/** One node URL as an origin ("https://a.example:8443"), or null when it is not one this
 * page may use: an https page only talks to https nodes (the browser would block the rest,
 * and the join token must not travel in clear). */
export function nodeOrigin(url: string, pageProtocol: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    return null;
  }
  const allowed = pageProtocol === "https:" ? ["https:"] : ["http:", "https:"];
  return allowed.includes(parsed.protocol) ? parsed.origin : null;
}

/** The join link's comma-separated `nodes` (as stored with the token), else [pageOrigin]. */
export function pageNodes(listed: string, pageOrigin: string, pageProtocol: string): string[] {
  const nodes = unique(listed.split(",").map((u) => nodeOrigin(u, pageProtocol)));
  return nodes.length ? nodes : [pageOrigin];
}

/** `given` first (never dropped: the server lists nodes by their own addresses, which this
 * browser may not reach), then the server's `config.nodes` not among them. */
export function mergeNodes(given: string[], offered: unknown, pageProtocol: string): string[] {
  if (!Array.isArray(offered)) return given;
  const extra = offered.map((u) => (typeof u === "string" ? nodeOrigin(u, pageProtocol) : null));
  return unique([...given, ...extra]);
}

function unique(urls: (string | null)[]): string[] {
  return [...new Set(urls.filter((u): u is string => u !== null))];
}
