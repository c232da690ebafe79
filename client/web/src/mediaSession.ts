// This page's media while admitted: the one relay peer (media.ts) fed with the own tracks,
// incoming streams by publisher handle, and own mic/camera on/off. Muting is the server's
// (`mute` with one's own id: the view says who holds each mute, the relay drops what is
// muted) and the page stops sending at once: the sender carries no track (no packets), not
// a disabled one (which still sends black frames and silence).

import { emit } from "./connection";
import { RelayPeer } from "./media";
import { mediaHooks } from "./e2ee";
import { renderTiles } from "./screens/videoGrid";
import { endLocalShare, renderShare } from "./share";
import { state, ui } from "./state";
import { type Kind, ownMute, sending } from "./mutes";
import { toast } from "./toast";
import { isObserver } from "./types";

/** Create the relay peer once admitted and connected (again after a reconnect). */
export function ensureMedia(): void {
  if (state.peer || !state.socket?.connected || state.view?.you.status !== "admitted") return;
  if (isObserver(state.view.you.role) && state.local) {
    // An observer never publishes (the relay would drop it anyway): no camera, no mic.
    state.local.getTracks().forEach((t) => t.stop());
    state.local = null;
  }
  state.peer = new RelayPeer(state.local, (m) => emit("signal", m), (handle, stream) => {
    state.streams.set(handle, stream);
    renderTiles();
    renderShare();
  }, (text, detail) => {
    console.warn("circle media:", text, detail ?? "");
    toast(text);
  }, state.iceServers, mediaHooks());
  applySending();
  state.peer.start();
}

/** Close the peer: after a drop the relay has dropped it too, and a new one offers again. */
export function dropMedia(): void {
  endLocalShare(); // the server ends a share whose sharer's connection dropped
  state.peer?.close();
  state.peer = null;
  state.streams.clear();
  if (ui.grid) renderTiles();
}

/** Stop sending what is muted and send again what is not (the local preview follows). */
export function applySending(): void {
  settleOwnMutes();
  const audio = state.local?.getAudioTracks()[0] ?? null;
  const video = state.local?.getVideoTracks()[0] ?? null;
  state.local?.getTracks().forEach((t) => { t.enabled = sending(t.kind as Kind); });
  state.peer?.setSending({ audio: sending("audio") ? audio : null, video: sending("video") ? video : null });
}

/** An own mute asked for is held by the server's view once it records it. */
function settleOwnMutes(): void {
  for (const kind of ["audio", "video"] as const) {
    if (state.selfMuted[kind] && state.view?.you.muted_self?.[kind]) state.selfMuted[kind] = false;
  }
}

/** The mic or camera button: mute oneself (sending stops before the server even answers)
 * or lift one's own mute (sending resumes when the server's view says so; a therapist's
 * mute stays: the server refuses with "the therapist muted you"). */
export async function toggleOwnMute(kind: Kind): Promise<void> {
  const you = state.view?.you;
  if (!you) return;
  const muted = !ownMute(kind);
  if (muted) state.selfMuted[kind] = true;
  applySending();
  const ack = await emit("mute", { participant_id: you.id, kind, muted });
  // The ack may overtake the state that records the mute: until that state arrives, the
  // asked-for mute holds (clearing it now would send again for a moment).
  if (!ack.ok || !muted) state.selfMuted[kind] = false;
  applySending();
  if (!ack.ok) {
    const why = ack.error?.message ?? "that did not work; try again";
    toast(why.charAt(0).toUpperCase() + why.slice(1) + ".");
  }
}

/** Release the camera and microphone. */
export function stopLocal(): void {
  state.local?.getTracks().forEach((t) => t.stop());
}
