// The join token lives in sessionStorage, not in the address bar.

const KEY = "circle.token";
const NODES_KEY = "circle.nodes";

/** Take the token from `?token=` (once) or from this tab's sessionStorage. A `nodes=` list
 * in the same link is stored with it: the token is only ever sent to nodes that came with
 * it, never to ones named by a later link opened in this tab. */
export function readToken(): string {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem(KEY, fromUrl);
    sessionStorage.setItem(NODES_KEY, params.get("nodes") ?? "");
    // Keep the token out of the address bar, history and screenshots.
    history.replaceState(null, "", location.pathname);
    return fromUrl;
  }
  return sessionStorage.getItem(KEY) ?? "";
}

/** The `nodes=` list that came with the token ("" when none). */
export function readNodes(): string {
  return sessionStorage.getItem(NODES_KEY) ?? "";
}

/** The session id (`sid` claim) of a join token, read without verifying it: only a routing
 * hint (`?session=` lets nginx send a session's connections to one node). */
export function sessionOf(token: string): string | null {
  const body = token.split(".")[1];
  if (!body) return null;
  try {
    const claims: unknown = JSON.parse(atob(body.replace(/-/g, "+").replace(/_/g, "/")));
    const sid = (claims as { sid?: unknown } | null)?.sid;
    return typeof sid === "string" && sid ? sid : null;
  } catch {
    return null;
  }
}

/** The session is over for this person (ended, left, signed out): the link must be opened again. */
export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(NODES_KEY);
}
