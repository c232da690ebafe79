// A second device: this person is already in the session on another device, so this one
// waits (calmly) until the therapist lets it take their place, or the other device goes.
// It gets nothing of the session meanwhile (no names, no media, no chat); it can leave.

import { h } from "../dom";
import { emit, syncReconnectingBanner } from "../connection";
import { app, state, ui } from "../state";
import { endScreen } from "./ended";
import { show } from "./router";

export function renderSecondDevice(): void {
  if (state.screen === "second-device") return;
  show("second-device");
  ui.banner = h("div", { class: "banner", role: "status", hidden: true, text: "Reconnecting…" });
  app.append(ui.banner, h("section", { class: "card waiting second-device", "aria-labelledby": "second-title" },
    h("h1", { id: "second-title", text: "You are already in this session on another device" }),
    h("p", { class: "calm", text: "The therapist has been asked to let this device take your place." }),
    h("p", { class: "hint", text: "You can stay on this page. Your other device keeps your place until then." }),
    h("button", { type: "button", class: "secondary", text: "Leave on this device", onclick: () => void leaveHere() }),
  ));
  syncReconnectingBanner();
}

/** Stop waiting on this device; the seat stays on the other one. */
async function leaveHere(): Promise<void> {
  if (state.socket?.connected) await emit("leave", {});
  endScreen("This device left", "Your place stays on your other device. You can close this window.", "second-left");
}
