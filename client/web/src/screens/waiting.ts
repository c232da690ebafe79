// The waiting room: the check-in (checkin.ts, clients and family members), calm text, time
// waited, messages from the therapist (notices.ts), Leave.

import { duration, h, setText } from "../dom";
import { syncReconnectingBanner } from "../connection";
import { helpButton } from "../help";
import { app, state, ui } from "../state";
import { tick } from "../ticker";
import { buildCheckin, renderCheckin } from "./checkin";
import { leave } from "./ended";
import { show } from "./router";

export function renderWaiting(): void {
  if (state.screen !== "waiting") {
    show("waiting");
    ui.banner = h("div", { class: "banner", role: "status", hidden: true, text: "Reconnecting…" });
    ui.waited = h("p", { class: "waited", role: "timer", "aria-live": "off" });
    ui.notices = h("ul", { class: "notices", "aria-live": "polite", "aria-label": "Messages from the therapist" });
    ui.backToWaiting = h("p", { class: "calm back-to-waiting", role: "status", hidden: true });
    app.append(ui.banner, h("section", { class: "card waiting", "aria-labelledby": "waiting-title" },
      h("h1", { id: "waiting-title", text: "You are in the waiting room" }),
      ui.backToWaiting,
      buildCheckin(),
      h("p", { class: "calm", text: "Your therapist will let you in soon. You can stay on this page; there is nothing else you need to do." }),
      ui.waited,
      h("h2", { text: "Messages from your therapist" }),
      h("p", { class: "hint no-messages", text: "No messages yet." }),
      ui.notices,
      helpButton(),
      h("button", { type: "button", class: "secondary", text: "Leave the waiting room", onclick: () => leave() }),
    ));
    syncReconnectingBanner();
  }
  renderCheckin();
  // Sent back by a clinician (sent_to_waiting): say so, calmly.
  ui.backToWaiting.hidden = !state.backToWaiting;
  setText(ui.backToWaiting, state.backToWaiting);
  // The whole clock, as every second: the time waited shows at once (and the idle check runs).
  tick();
}

/** Once a second: the time waited. */
export function tickWaiting(): void {
  if (state.screen === "waiting" && ui.waited) setText(ui.waited, `You have waited ${duration(Date.now() - state.waitingSince)}`);
}
