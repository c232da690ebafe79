// Who holds this person's mutes, from the server's view: a leaf (state only), read by the
// controls, the own tile and the media session.

import { state } from "./state";

export type Kind = "audio" | "video";

/** Whether this page sends `kind` now: not while the server has it muted (by this person
 * or a therapist), nor while this person's own mute is on its way to the server. */
export function sending(kind: Kind): boolean {
  const muted = state.view?.you.muted ?? { audio: false, video: false };
  return !muted[kind] && !state.selfMuted[kind];
}

/** This person's own mute of `kind` (asked for or held): what their button lifts. */
export function ownMute(kind: Kind): boolean {
  return !!state.view?.you.muted_self?.[kind] || state.selfMuted[kind];
}
