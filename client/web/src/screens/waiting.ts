// The waiting room: calm text, time waited, messages from the therapist (notices.ts), Leave.

import { duration, h, setText } from "../dom";
import { syncReconnectingBanner } from "../connection";
import { app, state, ui } from "../state";
import { tick } from "../ticker";
import { leave } from "./ended";
import { show } from "./router";

export function renderWaiting(): void {
  if (state.screen !== "waiting") {
    show("waiting");
    ui.banner = h("div", { class: "banner", role: "status", hidden: true, text: "Reconnecting…" });
    ui.waited = h("p", { class: "waited", role: "timer", "aria-live": "off" });
    ui.notices = h("ul", { class: "notices", "aria-live": "polite", "aria-label": "Messages from the therapist" });
    app.append(ui.banner, h("section", { class: "card waiting", "aria-labelledby": "waiting-title" },
      h("h1", { id: "waiting-title", text: "You are in the waiting room" }),
      h("p", { class: "calm", text: "Your therapist will let you in soon. You can stay on this page; there is nothing else you need to do." }),
      ui.waited,
      h("h2", { text: "Messages from your therapist" }),
      h("p", { class: "hint no-messages", text: "No messages yet." }),
      ui.notices,
      h("button", { type: "button", class: "secondary", text: "Leave the waiting room", onclick: () => leave() }),
    ));
    syncReconnectingBanner();
  }
  // The whole clock, as every second: the time waited shows at once (and the idle check runs).
  tick();
}

/** Once a second: the time waited. */
export function tickWaiting(): void {
  if (state.screen === "waiting" && ui.waited) setText(ui.waited, `You have waited ${duration(Date.now() - state.waitingSince)}`);
}
