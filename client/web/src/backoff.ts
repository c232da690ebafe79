// When and where to reconnect, as pure functions (the rules of client/reconnect.py, which
// the Python client uses): capped exponential backoff with full jitter, nodes in rotation,
// and which refusals and server disconnects are worth following.

export interface Backoff {
  baseMs: number;
  capMs: number;
}

/** Quick after a blip, gentle on a node that is down: 250 ms doubling up to 5 s. */
export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, capMs: 5000 };

/** The longest wait before attempt `attempt` (0-based): base * 2^attempt, capped. */
export function ceilingMs(attempt: number, backoff: Backoff = DEFAULT_BACKOFF): number {
  return Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(attempt, 64));
}

/** Full jitter: uniform in [0, ceiling], so a draining node's clients do not all arrive at
 * the next node in the same instant. `random` is Math.random (a seeded one in tests). */
export function delayMs(attempt: number, random: () => number, backoff: Backoff = DEFAULT_BACKOFF): number {
  return random() * ceilingMs(attempt, backoff);
}

/** The node of attempt `attempt` after losing node `lost` (-1: none yet): the next node
 * first, then on around the list, the lost one last in each round. */
export function nodeFor(attempt: number, lost: number, count: number): number {
  if (count < 1) throw new Error("no node to connect to");
  return (lost + 1 + attempt) % count;
}

/** A refusal worth retrying: no code (no answer), or a conflict the server says will pass
 * ("…, try again": a session being reloaded or handed to another node). Expired, revoked,
 * removed, locked and ended are final. */
export function isTransientRefusal(code: string | undefined, message: string): boolean {
  return !code || (code === "conflict" && /try again\s*$/.test(message));
}

/** A connection up this long has settled: an unannounced server disconnect after it is news. */
export const STABLE_MS = 10000;

/** Whether an unannounced server disconnect ("io server disconnect" without a `reconnect`
 * request first) means another window or device with the same link is taking the seat:
 * the server closes the older connection of a participant when a newer one arrives. The
 * first is followed (it may be a node going away without notice); a second one soon after
 * the reconnection it caused is the other window being replaced by this one, and following
 * that too would have the two replace each other for ever. */
export function takesTurns(openedAfterUnannounced: boolean, uptimeMs: number, stableMs: number = STABLE_MS): boolean {
  return openedAfterUnannounced && uptimeMs < stableMs;
}
