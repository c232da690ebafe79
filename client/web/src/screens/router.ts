// Which screen is on: `show` swaps screens, `render` picks one from the latest `state` view.

import { clear } from "../dom";
import { resetIdle } from "../idle";
import { askFirst, closeIdlePrompt } from "../logoff";
import { dropMedia, ensureMedia } from "../mediaSession";
import { app, state, ui } from "../state";
import { endScreen } from "./ended";
import { renderSession } from "./session";
import { renderSecondDevice } from "./secondDevice";
import { renderWaiting } from "./waiting";

/** Start a new screen (empty page, no element references or planner from the last one). */
export function show(name: string): void {
  if (state.screen === name) return;
  state.screen = name;
  clear(app);
  for (const k of Object.keys(ui)) delete ui[k];
  state.planner = null;
  document.body.dataset.screen = name;
  if (!askFirst(name)) {
    // A new screen with the plain sign-out policy starts its own idle clock.
    closeIdlePrompt();
    resetIdle();
  }
}

export function render(): void {
  const view = state.view;
  if (!view || state.finished) return;
  const { you, session } = view;
  const lastNotice = state.lastNotice;
  if (session.ended) {
    endScreen("The session has ended", "Thank you for joining. You can close this window.", "ended");
  } else if (you.second_device === "waiting" && (you.status === "waiting" || you.status === "admitted")) {
    // This person is connected on another device: this one waits for the therapist.
    renderSecondDevice();
  } else if (you.status === "waiting") {
    // Sent back to the waiting room: the relay closed this page's media path.
    if (state.peer) dropMedia();
    renderWaiting();
  } else if (you.status === "admitted") {
    state.backToWaiting = "";
    renderSession();
    ensureMedia();
  } else if (you.status === "denied") {
    endScreen("You were not admitted", lastNotice?.kind === "denied" ? lastNotice.text : "You were not admitted.", "denied");
  } else if (you.status === "removed") {
    endScreen("You were removed from the session", lastNotice?.kind === "removed" ? lastNotice.text : "Please contact the clinic if you have questions.", "removed");
  } else if (you.status === "left") {
    endScreen("You left the session", "You can close this window.", "left");
  }
}
