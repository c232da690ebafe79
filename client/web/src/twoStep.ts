// A button for actions that cannot be undone (remove someone, end the session): the first
// press only arms it ("Confirm: ..."), a second press within 5 seconds acts.

import { h, setText } from "./dom";

export function twoStep(label: string, confirm: string, cls: string, action: () => unknown, aria?: string): HTMLButtonElement {
  let armed = false;
  let timer = 0;
  const button = h("button", { type: "button", class: `control ${cls}`, text: label, "aria-label": aria ?? label,
    onclick: () => {
      if (armed) {
        armed = false; clearTimeout(timer); setText(button, label); button.setAttribute("aria-label", aria ?? label);
        action();
        return;
      }
      armed = true;
      setText(button, confirm);
      button.setAttribute("aria-label", confirm);
      timer = window.setTimeout(() => { armed = false; setText(button, label); button.setAttribute("aria-label", aria ?? label); }, 5000);
    } });
  return button;
}
