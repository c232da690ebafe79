// `notice` events: denied/removed end the page; the therapist's messages go to the waiting
// room; breakout warnings, broadcasts and help requests go to the notices (and a toast).

import { h } from "./dom";
import { emit } from "./connection";
import { endScreen } from "./screens/ended";
import { app, state, ui } from "./state";
import { toast } from "./toast";
import type { Notice } from "./types";

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
  let text = n.text || "";
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
  if (n.kind === "help") {
    const who = view?.participants.find((p) => p.id === n.participant_id)?.name ?? "A client";
    const room = view?.breakouts?.rooms.find((r) => r.id === n.room)?.name ?? n.room ?? "";
    text = text || `${who} asks for help in ${room}.`;
  }
  const item = h("li", { class: `notice n-${n.kind.replace(/[^a-z_]/g, "")}` },
    h("span", { class: "time hint", text: new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + " " }),
    h("span", { class: "text", text }));
  if (n.kind === "help" && n.room) {
    const roomId = n.room;
    item.append(h("button", { type: "button", class: "secondary", text: "Visit", "aria-label": `Visit ${text}`,
      onclick: () => emit("breakout_visit", { room: roomId }) }));
  }
  ui.notices?.prepend(item);
  if (["breakout_warning", "broadcast", "breakouts_closing", "help"].includes(n.kind)) toast(text, "info");
}
