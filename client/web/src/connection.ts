// The socket to the server: connecting with the join token, routing every server event to
// the module that handles it, sending requests (`emit`), and the "reconnecting" banner.
//
// Reconnection is done here, not by socket.io-client: its Manager retries one URL only, and
// not at all after a server-side disconnect, while a node that drains asks its clients to
// move (`reconnect`) and one that dies leaves them to find another. Every attempt opens a
// new socket (and Manager) on the next node in rotation, after a backoff with jitter
// (backoff.ts), with the same token: within the reconnect grace the seat is kept.

import { io, type Socket } from "socket.io-client";
import { delayMs, isTransientRefusal, nodeFor, takesTurns } from "./backoff";
import { h, setText } from "./dom";
import type { Ack, SignalMessage } from "./media";
import { dropMedia, ensureMedia } from "./mediaSession";
import { e2eeKey, e2eeView, publicKey, ready as e2eeReady } from "./e2ee";
import type { IncomingKey } from "./e2ee/keyManager";
import { addChat } from "./chat";
import { mergeNodes, pageNodes } from "./nodes";
import { onNotice } from "./notices";
import { endScreen } from "./screens/ended";
import { render, show } from "./screens/router";
import { syncServerClock } from "./serverClock";
import { app, state, ui } from "./state";
import { toast } from "./toast";
import { readNodes, readResume, sessionOf, storeResume } from "./token";
import type { ChatMessage, Notice, View } from "./types";

/** A banner that flashes for a moment reads as a glitch: once up, it stays this long. */
const BANNER_MIN_MS = 1000;

/** Leave the device check and connect; the `state` view decides the next screen. */
export function join(): void {
  state.meterStop?.();
  state.meterStop = null;
  state.waitingSince = Date.now();
  show("connecting");
  app.append(h("section", { class: "card" }, h("h1", { text: "Connecting…" }),
    h("p", { class: "hint", text: "One moment." })));
  const link = state.link;
  link.given = pageNodes(readNodes(), location.origin, location.protocol);
  link.nodes = link.given;
  link.lost = -1;
  link.attempt = 1;
  // The page's e2ee key pair is made before the first connect (its public key goes along).
  void e2eeReady.then(() => open(nodeFor(0, -1, link.nodes.length)));
}

/** One connection attempt to `link.nodes[index]`, on a socket of its own. */
function open(index: number): void {
  const link = state.link;
  const url = link.nodes[index];
  const session = sessionOf(state.token);
  // The seat's secret, when this tab had one: the same browser takes its seat back at once.
  const resume = readResume();
  const auth: Record<string, string> = resume ? { token: state.token, resume } : { token: state.token };
  const e2eeKeyText = publicKey();
  if (e2eeKeyText) auth.e2ee_key = e2eeKeyText;
  const s: Socket = io(url, {
    auth,
    transports: ["websocket"], reconnection: false, forceNew: true,
    timeout: 10000, query: session ? { session } : {},
  });
  state.socket = s;
  link.announced = false;
  // Events of a socket already replaced by a newer attempt are ignored.
  const current = (): boolean => state.socket === s;
  s.on("connect", () => {
    if (!current()) return;
    state.connectedOnce = true;
    link.url = url;
    link.attempt = 0;
    link.connectedAt = Date.now();
    link.afterUnannounced = link.reopeningAfterUnannounced;
    reconnectingBanner(false);
  });
  s.on("disconnect", (reason) => {
    if (!current()) return;
    dropMedia();
    if (state.finished || reason === "io client disconnect" || link.announced) return;
    const unannounced = reason === "io server disconnect";
    if (unannounced && takesTurns(link.afterUnannounced, Date.now() - link.connectedAt)) {
      endScreen("You were disconnected", "This link was opened in another window or on another device, which took over.");
      return;
    }
    link.reopeningAfterUnannounced = unannounced;
    reconnectingBanner(true);
    reconnect(0);
  });
  s.on("connect_error", (err: Error & { data?: { code?: string } }) => {
    if (!current()) return;
    s.disconnect();
    const code = err.data?.code;
    if (code && !isTransientRefusal(code, err.message)) {
      if (code === "conflict" && /locked/i.test(err.message)) {
        endScreen("The session is locked", err.message || "The therapist has locked this session.", "locked");
      } else if (code === "conflict") {
        endScreen("This session cannot be joined", err.message || "Ask the clinic for a new link.", "refused");
      } else {
        endScreen("This link cannot be used", err.message || "Ask the clinic for a new link.", "refused");
      }
      return;
    }
    if (state.connectedOnce) {
      reconnectingBanner(true);
    } else if (state.screen === "connecting") {
      setText(app.querySelector(".card .hint")!, "Cannot reach the server yet; still trying…");
    }
    retry(0);
  });
  // A draining node asks its clients to move: leave now, and come back (to the next node)
  // after the pause it asks for (spread by the node, so its clients do not all arrive at once).
  s.on("reconnect", (data: { after_ms?: unknown } | undefined) => {
    if (!current() || state.finished) return;
    const after = data?.after_ms;
    const afterMs = typeof after === "number" && Number.isInteger(after) && after >= 0 ? after : 0;
    link.announced = true;
    link.reopeningAfterUnannounced = false;
    s.disconnect();
    reconnectingBanner(true);
    reconnect(afterMs);
  });
  s.on("state", (data: View) => {
    if (!current()) return;
    if (state.view && data.rev < state.view.rev) return;
    syncServerClock(data.server_time);
    state.view = data;
    e2eeView(data);
    render();
  });
  s.on("seat", (data: { resume?: unknown } | undefined) => {
    if (current() && typeof data?.resume === "string" && data.resume) storeResume(data.resume);
  });
  s.on("config", (data: { ice_servers?: RTCIceServer[]; nodes?: unknown }) => {
    if (!current()) return;
    state.iceServers = data.ice_servers ?? [];
    link.nodes = mergeNodes(link.given, data.nodes, location.protocol);
  });
  s.on("signal", (data: SignalMessage) => { if (current()) state.peer?.handle(data); });
  // The relay lost this page's media path (a media worker restarted): start media over.
  s.on("media_reset", () => { if (current()) { dropMedia(); ensureMedia(); } });
  s.on("chat", (data: ChatMessage) => { if (current()) addChat(data); });
  s.on("e2ee_key", (data: IncomingKey) => { if (current() && data && typeof data === "object") e2eeKey(data); });
  s.on("notice", (data: Notice) => { if (current()) onNotice(data); });
  s.on("ended", () => {
    if (current()) endScreen("The session has ended", "Thank you for joining. You can close this window.", "ended");
  });
}

/** The connection is lost: attempts start over, from the node after the one lost. */
function reconnect(holdMs: number): void {
  const link = state.link;
  link.lost = link.nodes.indexOf(link.url);
  link.attempt = 0;
  retry(holdMs);
}

/** The next attempt, by the backoff schedule, `holdMs` later still. */
function retry(holdMs: number): void {
  const link = state.link;
  window.clearTimeout(link.timer);
  const index = nodeFor(link.attempt, link.lost, link.nodes.length);
  const delay = holdMs + delayMs(link.attempt, Math.random);
  link.attempt += 1;
  link.timer = window.setTimeout(() => {
    if (!state.finished) open(index);
  }, delay);
}

/** Send a request and wait for its ack; a refusal or timeout is shown as an error toast. */
export async function emit(event: string, data: unknown): Promise<Ack> {
  const socket = state.socket;
  if (!socket) return { ok: false, error: { code: "invalid", message: "not connected" } };
  let ack: Ack;
  if (!socket.connected) {
    // A socket that is down is never used again (the next attempt opens a new one), so
    // nothing would carry this request: say so now rather than time out.
    ack = { ok: false, error: { code: "unavailable", message: "Reconnecting to the server; try again in a moment." } };
  } else {
    try {
      ack = (await socket.timeout(10000).emitWithAck(event, data)) as Ack;
    } catch {
      ack = { ok: false, error: { code: "timeout", message: "The server did not answer in time." } };
    }
  }
  if (!ack?.ok) toast(ack?.error?.message ?? "That did not work.");
  return ack ?? { ok: false };
}

/** Show or hide the current screen's "reconnecting" banner (hidden no sooner than
 * BANNER_MIN_MS after it went up). */
export function reconnectingBanner(on: boolean): void {
  const banner = state.banner;
  const up = document.body.classList.contains("reconnecting");
  window.clearTimeout(banner.timer);
  banner.timer = undefined;
  if (on && !up) banner.shownAt = Date.now();
  const left = banner.shownAt + BANNER_MIN_MS - Date.now();
  // Still on while its minimum time runs, also on a screen built meanwhile.
  showBanner(on || (up && left > 0));
  if (!on && up && left > 0) banner.timer = window.setTimeout(() => showBanner(false), left);
}

function showBanner(on: boolean): void {
  const el = ui.banner;
  if (el) el.hidden = !on;
  document.body.classList.toggle("reconnecting", on);
}

/** The banner's state for a screen just built: on if the socket is down right now. */
export function syncReconnectingBanner(): void {
  reconnectingBanner(!!state.socket && !state.socket.connected);
}
