// Hooks for the browser tests (nothing here that the page does not show already).

import { state } from "./state";
import { e2eeDebug } from "./e2ee";

export function installDebugHooks(): void {
  (window as unknown as Record<string, unknown>).circleDebug = {
    // By the id this page knows each publisher by (the relay names streams by handle).
    inbound: async () => {
      const byHandle = state.peer ? await state.peer.inbound() : {};
      const known = new Map((state.view?.participants ?? []).map((p) => [p.handle, p.id]));
      return Object.fromEntries(Object.entries(byHandle).map(([h, v]) => [known.get(h) ?? h, v]));
    },
    drop: () => state.socket?.io.engine?.close(),
    state: () => state.view,
    // End-to-end encryption: on, own kid/epoch, key fingerprints (hashes, never keys), counts.
    e2ee: () => e2eeDebug(),
    // What the camera's sender encodes (size, frame rate): the e2ee CPU bench reports it.
    videoOut: async () => {
      const out: Record<string, number> = {};
      (await state.peer?.pc.getStats())?.forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "video" && s.frameWidth) {
          out.width = s.frameWidth; out.height = s.frameHeight; out.fps = s.framesPerSecond ?? 0;
        }
      });
      return out;
    },
    connected: () => !!state.socket?.connected,
    iceState: () => state.peer?.pc.iceConnectionState ?? null,
    // How many of the page's own tracks it sends (an observer: none).
    sendingTracks: () => state.peer?.pc.getSenders().filter((s) => s.track).length ?? 0,
    // Whether each own sender carries a track (a mute takes it off: no packets at all).
    sending: () => ({ audio: state.peer?.sendingTrack("audio") ?? false,
      video: state.peer?.sendingTrack("video") ?? false }),
    pc: () => {
      const peer = state.peer;
      return peer && {
        ice: peer.pc.iceConnectionState, connection: peer.pc.connectionState, signaling: peer.pc.signalingState,
        local: peer.pc.localDescription?.sdp ?? null, remote: peer.pc.remoteDescription?.sdp ?? null,
        streams: [...state.streams.keys()],
      };
    },
  };
}
