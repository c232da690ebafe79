// This page's media while admitted: the one relay peer (media.ts) fed with the own tracks,
// incoming streams by publisher, and own mic/camera on/off (local `track.enabled`).

import { emit } from "./connection";
import { RelayPeer } from "./media";
import { renderTiles } from "./screens/videoGrid";
import { state, ui } from "./state";
import { toast } from "./toast";

/** Create the relay peer once admitted and connected (again after a reconnect). */
export function ensureMedia(): void {
  if (state.peer || !state.socket?.connected || state.view?.you.status !== "admitted") return;
  state.peer = new RelayPeer(state.local, (m) => emit("signal", m), (pid, stream) => {
    state.streams.set(pid, stream);
    renderTiles();
  }, (text, detail) => {
    console.warn("circle media:", text, detail ?? "");
    toast(text);
  }, state.iceServers);
  applyLocalEnabled();
  state.peer.start();
}

/** Close the peer: after a drop the relay has dropped it too, and a new one offers again. */
export function dropMedia(): void {
  state.peer?.close();
  state.peer = null;
  state.streams.clear();
  if (ui.grid) renderTiles();
}

/** A track is on only if neither this person nor the therapist switched it off. */
export function applyLocalEnabled(): void {
  const forced = state.view?.you.muted ?? { audio: false, video: false };
  state.local?.getAudioTracks().forEach((t) => { t.enabled = !state.selfMuted.audio && !forced.audio; });
  state.local?.getVideoTracks().forEach((t) => { t.enabled = !state.selfMuted.video && !forced.video; });
}

/** Release the camera and microphone. */
export function stopLocal(): void {
  state.local?.getTracks().forEach((t) => t.stop());
}
