// "Ask for help", from anywhere (waiting room, main room, breakout, aside): a `help` event
// that only the clinicians are told of; the asker gets a quiet confirmation, nobody else
// sees anything.

import { h } from "./dom";
import { emit } from "./connection";
import { toast } from "./toast";

export const HELP_SENT = "Your therapist has been told.";

/** A small "Ask for help" button; `status` shows the confirmation beside it. */
export function helpButton(): HTMLElement {
  const status = h("span", { class: "help-sent hint", role: "status" });
  const button = h("button", { type: "button", class: "control help", text: "Ask for help",
    "aria-label": "Ask for help (only your therapist is told)",
    onclick: () => emit("help", {}).then((a) => {
      if (!a.ok) return;
      status.textContent = HELP_SENT;
      toast(HELP_SENT, "info");
    }) });
  return h("span", { class: "help-box" }, button, status);
}
