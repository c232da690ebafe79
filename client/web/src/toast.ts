// Short-lived messages in the corner: errors (an action failed) and info (sent, warnings).

import { h } from "./dom";

export function toast(text: string, kind: "error" | "info" = "error"): void {
  let holder = document.getElementById("toasts");
  if (!holder) {
    holder = h("div", { id: "toasts", role: "alert", "aria-live": "assertive" });
    document.body.append(holder);
  }
  const item = h("div", { class: `toast ${kind}`, text });
  holder.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 6000 : 8000);
}
