// The own controls under the video grid: mic, camera, hand, "Ask for help" (in a breakout),
// for therapists lock and end; Leave.

import { h, setText } from "../dom";
import { emit } from "../connection";
import { applyLocalEnabled } from "../mediaSession";
import { state, ui } from "../state";
import { toast } from "../toast";
import { twoStep } from "../twoStep";
import { leave } from "./ended";
import { renderTiles } from "./videoGrid";

export function buildControls(therapist: boolean): void {
  const c = ui.controls;
  const { selfMuted } = state;
  ui.mic = h("button", { type: "button", class: "control", onclick: () => {
    selfMuted.audio = !selfMuted.audio; applyLocalEnabled(); renderControls(); renderTiles();
  } });
  ui.cam = h("button", { type: "button", class: "control", onclick: () => {
    selfMuted.video = !selfMuted.video; applyLocalEnabled(); renderControls(); renderTiles();
  } });
  ui.hand = h("button", { type: "button", class: "control", onclick: () => emit("hand", { raised: !state.view?.you.hand }) });
  ui.help = h("button", { type: "button", class: "control", text: "Ask for help", hidden: true,
    onclick: () => emit("breakout_help", {}).then((a) => { if (a.ok) toast("Your therapist has been asked to help.", "info"); }) });
  c.append(ui.mic, ui.cam, ui.hand, ui.help);
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
  const { local, selfMuted } = state;
  const forced = view.you.muted ?? { audio: false, video: false };
  const hasAudio = !!local?.getAudioTracks().length;
  const hasVideo = !!local?.getVideoTracks().length;
  const micOff = selfMuted.audio || forced.audio;
  const camOff = selfMuted.video || forced.video;
  setText(ui.mic, !hasAudio ? "No microphone" : forced.audio ? "Mic muted by therapist" : micOff ? "Unmute microphone" : "Mute microphone");
  ui.mic.setAttribute("aria-pressed", String(micOff));
  (ui.mic as HTMLButtonElement).disabled = !hasAudio || forced.audio;
  setText(ui.cam, !hasVideo ? "Audio only" : forced.video ? "Camera off by therapist" : camOff ? "Turn camera on" : "Turn camera off");
  ui.cam.setAttribute("aria-pressed", String(camOff));
  (ui.cam as HTMLButtonElement).disabled = !hasVideo || forced.video;
  setText(ui.hand, view.you.hand ? "Lower hand" : "Raise hand");
  ui.hand.setAttribute("aria-pressed", String(!!view.you.hand));
  const inBreakout = !!view.breakouts?.open && !!view.you.room && view.you.room !== "main";
  ui.help.hidden = !(inBreakout && view.you.role === "client");
  if (ui.lock) {
    setText(ui.lock, view.session.locked ? "Unlock session" : "Lock session");
    ui.lock.setAttribute("aria-pressed", String(view.session.locked));
  }
}
