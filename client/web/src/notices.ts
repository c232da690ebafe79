// `notice` events: denied/removed end the page, and so do the seat moving to another device
// and a waiting second device being turned away; the therapist's messages go to the waiting
// room; breakout warnings, broadcasts, help requests and second devices go to the notices
// (and a toast).

import { h } from "./dom";
import { emit } from "./connection";
import { endScreen } from "./screens/ended";
import { app, state, ui } from "./state";
import { toast } from "./toast";
import { isAsideRoom, type Notice } from "./types";

export function onNotice(n: Notice): void {
  state.lastNotice = n;
  if (n.kind === "denied") {
    endScreen("You were not admitted", n.text || "You were not admitted.", "denied");
    return;
  }
  if (n.kind === "removed") {
    endScreen("You were removed from the session", n.text || "", "removed");
    return;
  }
  // The server closes this connection next: the seat is on another device, for good.
  const final = FINAL[n.kind];
  if (final) {
    endScreen(final[0], n.text || final[1], final[2]);
    return;
  }
  let text = n.text || "";
  if (n.kind === "sent_to_waiting") {
    // The waiting room (the view that follows) says it, calmly; no toast.
    state.backToWaiting = text || "The therapist has moved you back to the waiting room for a moment.";
    return;
  }
  if (n.kind === "message") {
    // The therapist's word to the waiting room: plain text, clearly from the therapist.
    app.querySelector(".no-messages")?.remove();
    ui.notices?.prepend(h("li", { class: "notice n-message" },
      h("span", { class: "from", text: "From your therapist" }),
      h("span", { class: "time hint", text: ` · ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` }),
      h("p", { class: "text", text })));
    return;
  }
  const view = state.view;
  let who = "A client";
  if (n.kind === "help") {
    who = [...(view?.participants ?? []), ...(view?.waiting ?? [])].find((p) => p.id === n.participant_id)?.name ?? who;
    const room = n.room === "waiting" ? "the waiting room" : n.room === "main" ? "the main room"
      : isAsideRoom(n.room) ? "an aside" : view?.breakouts?.rooms.find((r) => r.id === n.room)?.name ?? n.room ?? "";
    text = `${who} asks for help in ${room}.`;
  }
  const item = h("li", { class: `notice n-${n.kind.replace(/[^a-z_]/g, "")}` },
    h("span", { class: "time hint", text: new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + " " }),
    h("span", { class: "text", text }));
  if (n.kind === "help" && n.room && n.room !== "main" && n.room !== "waiting" && !isAsideRoom(n.room)) {
    const roomId = n.room;
    item.append(h("button", { type: "button", class: "secondary", text: "Visit", "aria-label": `Visit ${text}`,
      onclick: () => emit("breakout_visit", { room: roomId }) }));
  }
  if (n.kind === "help" && n.participant_id && n.room !== "waiting" && !isAsideRoom(n.room)) {
    // One click: this clinician and the asker into a private aside (the group goes on).
    const pid = n.participant_id;
    item.append(h("button", { type: "button", class: "primary", text: "Aside", "aria-label": `Aside with ${who}`,
      onclick: () => emit("aside_open", { participant_id: pid }) }));
  }
  ui.notices?.prepend(item);
  if (["breakout_warning", "broadcast", "breakouts_closing", "help", "second_device", "second_device_moved", "another_device"].includes(n.kind)) toast(text, "info");
}

/** Notices after which this connection is closed for good: [title, text, end screen kind]. */
const FINAL: Record<string, [string, string, string]> = {
  continued_elsewhere: ["This session continued on another device", "This session continued on another device.", "moved"],
  second_device_refused: ["Your place stays on your other device", "The therapist kept your place on your other device.", "second-refused"],
  second_device_replaced: ["This link was opened on another device", "Another device now waits in this one's place.", "second-replaced"],
  second_device_closed: ["This device is no longer waiting", "Your place stays on your other device.", "second-closed"],
};
