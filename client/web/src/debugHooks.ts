// Hooks for the browser tests (nothing here that the page does not show already).

import { state } from "./state";

export function installDebugHooks(): void {
  (window as unknown as Record<string, unknown>).circleDebug = {
    inbound: async () => (state.peer ? await state.peer.inbound() : {}),
    drop: () => state.socket?.io.engine?.close(),
    state: () => state.view,
    connected: () => !!state.socket?.connected,
    iceState: () => state.peer?.pc.iceConnectionState ?? null,
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
