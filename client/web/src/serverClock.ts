// The server's clock as this page sees it. Breakout deadlines and waiting-room times come
// from the server; a patient's laptop clock is often minutes (or a year) off, so count from
// the offset the last `state` view revealed (`server_time`), never from `Date.now()` alone.

let offsetMs = 0;

/** Remember how far the server's clock is from this page's (`state.server_time`). */
export function syncServerClock(serverTime: string | undefined): void {
  const at = serverTime ? Date.parse(serverTime) : NaN;
  if (!Number.isNaN(at)) offsetMs = at - Date.now();
}

/** Now, in milliseconds since the epoch, by the server's clock. */
export function serverNow(): number {
  return Date.now() + offsetMs;
}
