// The join token lives in sessionStorage, not in the address bar; beside it, the resume
// secret of this tab's seat (the server's `seat` message), which proves on a reconnect
// that this is the browser that held the seat.

const KEY = "circle.token";
const NODES_KEY = "circle.nodes";
const RESUME_KEY = "circle.resume";
const OBSERVE_KEY = "circle.observe";

/** Take the token from `?token=` (once) or from this tab's sessionStorage. A `nodes=` list
 * in the same link is stored with it: the token is only ever sent to nodes that came with
 * it, never to ones named by a later link opened in this tab. */
export function readToken(): string {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    // Another link opened in this tab: the last seat's secret is not this one's.
    if (sessionStorage.getItem(KEY) !== fromUrl) sessionStorage.removeItem(RESUME_KEY);
    sessionStorage.setItem(KEY, fromUrl);
    sessionStorage.setItem(NODES_KEY, params.get("nodes") ?? "");
    sessionStorage.setItem(OBSERVE_KEY, params.get("observe") === "1" ? "1" : "");
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

/** The link is an observer's (`observe=1`, set by the server on observer invites): the page
 * skips the camera check. Only a hint: the relay never forwards an observer's media. */
export function readObserve(): boolean {
  return sessionStorage.getItem(OBSERVE_KEY) === "1";
}

/** The resume secret of this tab's latest connection ("" before the first `seat`). */
export function readResume(): string {
  return sessionStorage.getItem(RESUME_KEY) ?? "";
}

/** Keep the secret the server gave this connection (`seat {resume}`), for the next connect. */
export function storeResume(secret: string): void {
  sessionStorage.setItem(RESUME_KEY, secret);
}

/** The session is over for this person (ended, left, signed out): the link must be opened again. */
export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(NODES_KEY);
  sessionStorage.removeItem(RESUME_KEY);
  sessionStorage.removeItem(OBSERVE_KEY);
}
