// The socket to the server: connecting with the join token, routing every server event to
// the module that handles it, sending requests (`emit`), and the "reconnecting" banner.

import { io } from "socket.io-client";
import { h, setText } from "./dom";
import type { Ack, SignalMessage } from "./media";
import { dropMedia, ensureMedia } from "./mediaSession";
import { addChat } from "./chat";
import { onNotice } from "./notices";
import { endScreen } from "./screens/ended";
import { render, show } from "./screens/router";
import { syncServerClock } from "./serverClock";
import { app, state, ui } from "./state";
import { toast } from "./toast";
import type { ChatMessage, Notice, View } from "./types";

/** Leave the device check and connect; the `state` view decides the next screen. */
export function join(): void {
  state.meterStop?.();
  state.meterStop = null;
  state.waitingSince = Date.now();
  show("connecting");
  app.append(h("section", { class: "card" }, h("h1", { text: "Connecting…" }),
    h("p", { class: "hint", text: "One moment." })));
  const s = io({ auth: { token: state.token }, transports: ["websocket"], reconnectionDelay: 500,
    reconnectionDelayMax: 3000 });
  state.socket = s;
  s.on("connect", () => {
    state.connectedOnce = true;
    reconnectingBanner(false);
  });
  s.on("disconnect", (reason) => {
    dropMedia();
    if (state.finished || reason === "io client disconnect") return;
    if (reason === "io server disconnect") {
      // Denied, removed and ended arrive as messages first; anything else is a plain drop.
      setTimeout(() => {
        if (!state.finished) endScreen("You were disconnected", "The server closed this connection (perhaps you joined from another window).");
      }, 800);
      return;
    }
    reconnectingBanner(true);
  });
  s.on("connect_error", (err: Error & { data?: { code?: string } }) => {
    const code = err.data?.code;
    if (code === "conflict" && /locked/i.test(err.message)) {
      endScreen("The session is locked", err.message || "The therapist has locked this session.", "locked");
    } else if (code === "conflict") {
      endScreen("This session cannot be joined", err.message || "Ask the clinic for a new link.", "refused");
    } else if (code) {
      endScreen("This link cannot be used", err.message || "Ask the clinic for a new link.", "refused");
    } else if (state.connectedOnce) {
      reconnectingBanner(true);
    } else if (state.screen === "connecting") {
      setText(app.querySelector(".card .hint")!, "Cannot reach the server yet; still trying…");
    }
  });
  s.on("state", (data: View) => {
    if (state.view && data.rev < state.view.rev) return;
    syncServerClock(data.server_time);
    state.view = data;
    render();
  });
  s.on("config", (data: { ice_servers?: RTCIceServer[] }) => {
    state.iceServers = data.ice_servers ?? [];
  });
  s.on("signal", (data: SignalMessage) => state.peer?.handle(data));
  // The relay lost this page's media path (a media worker restarted): start media over.
  s.on("media_reset", () => { dropMedia(); ensureMedia(); });
  s.on("chat", (data: ChatMessage) => addChat(data));
  s.on("notice", (data: Notice) => onNotice(data));
  s.on("ended", () => endScreen("The session has ended", "Thank you for joining. You can close this window.", "ended"));
}

/** Send a request and wait for its ack; a refusal or timeout is shown as an error toast. */
export async function emit(event: string, data: unknown): Promise<Ack> {
  const socket = state.socket;
  if (!socket) return { ok: false, error: { code: "invalid", message: "not connected" } };
  let ack: Ack;
  try {
    ack = (await socket.timeout(10000).emitWithAck(event, data)) as Ack;
  } catch {
    ack = { ok: false, error: { code: "timeout", message: "The server did not answer in time." } };
  }
  if (!ack?.ok) toast(ack?.error?.message ?? "That did not work.");
  return ack ?? { ok: false };
}

/** Show or hide the current screen's "reconnecting" banner. */
export function reconnectingBanner(on: boolean): void {
  const el = ui.banner;
  if (el) el.hidden = !on;
  document.body.classList.toggle("reconnecting", on);
}

/** The banner's state for a screen just built: on if the socket is down right now. */
export function syncReconnectingBanner(): void {
  reconnectingBanner(!!state.socket && !state.socket.connected);
}
