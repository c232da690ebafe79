// The own controls under the video grid: mic, camera, hand, "Ask for help" (clients and
// family members, anywhere: help.ts), for therapists lock and end; Leave. Observers (the
// invite role) have no mic or camera: they never publish.

import { h, setText } from "../dom";
import { emit } from "../connection";
import { helpButton } from "../help";
import { applySending, toggleOwnMute } from "../mediaSession";
import { type Kind, ownMute } from "../mutes";
import { state, ui } from "../state";
import { buildShareControls } from "../share";
import { twoStep } from "../twoStep";
import { isClinician, isObserver } from "../types";
import { leave } from "./ended";
import { renderTiles } from "./videoGrid";

export function buildControls(therapist: boolean): void {
  const c = ui.controls;
  const toggle = (kind: Kind) => () => {
    const done = toggleOwnMute(kind);
    renderControls(); renderTiles();
    void done.then(() => { renderControls(); renderTiles(); });
  };
  ui.mic = h("button", { type: "button", class: "control", onclick: toggle("audio") });
  ui.cam = h("button", { type: "button", class: "control", onclick: toggle("video") });
  ui.hand = h("button", { type: "button", class: "control", onclick: () => emit("hand", { raised: !state.view?.you.hand }) });
  ui.help = helpButton();
  ui.help.hidden = true;
  c.append(ui.mic, ui.cam, ui.hand, ui.help, ...buildShareControls(therapist));
  if (therapist) {
    ui.lock = h("button", { type: "button", class: "control", onclick: () => emit("lock", { locked: !state.view?.session.locked }) });
    ui.end = twoStep("End session", "Confirm: end for everyone", "danger", () => emit("end", {}));
    c.append(ui.lock, ui.end);
  }
  c.append(h("button", { type: "button", class: "control danger", text: "Leave", onclick: () => leave() }));
}

export function renderControls(): void {
  const view = state.view;
  if (!view) return;
  const { local } = state;
  applySending();
  const forced = view.you.muted_by_therapist ?? { audio: false, video: false };
  const hasAudio = !!local?.getAudioTracks().length;
  const hasVideo = !!local?.getVideoTracks().length;
  const micOff = ownMute("audio") || forced.audio;
  const camOff = ownMute("video") || forced.video;
  setText(ui.mic, !hasAudio ? "No microphone" : forced.audio ? "Mic muted by therapist" : micOff ? "Unmute microphone" : "Mute microphone");
  ui.mic.setAttribute("aria-pressed", String(micOff));
  (ui.mic as HTMLButtonElement).disabled = !hasAudio || forced.audio;
  setText(ui.cam, !hasVideo ? "Audio only" : forced.video ? "Camera off by therapist" : camOff ? "Turn camera on" : "Turn camera off");
  ui.cam.setAttribute("aria-pressed", String(camOff));
  (ui.cam as HTMLButtonElement).disabled = !hasVideo || forced.video;
  setText(ui.hand, view.you.hand ? "Lower hand" : "Raise hand");
  ui.hand.setAttribute("aria-pressed", String(!!view.you.hand));
  // Help from anywhere, for the people the session is for (not clinicians, not observers).
  ui.help.hidden = isClinician(view.you.role) || isObserver(view.you.role);
  ui.mic.hidden = ui.cam.hidden = isObserver(view.you.role);
  if (ui.lock) {
    setText(ui.lock, view.session.locked ? "Unlock session" : "Lock session");
    ui.lock.setAttribute("aria-pressed", String(view.session.locked));
  }
}
