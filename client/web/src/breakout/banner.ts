// The banner over the session while this person is in a breakout room: room name, own role,
// scenario, countdown; observers are told they are listen-only.

import { append, clear, h, setText } from "../dom";
import { cap, countdownText } from "../planner";
import { state, ui } from "../state";
import { isClinician } from "../types";

export function renderBreakoutBanner(): void {
  const view = state.view;
  if (!view) return;
  const b = view.breakouts;
  const roomId = view.you.room;
  const room = b?.open ? b.rooms.find((r) => r.id === roomId) : undefined;
  const el = ui.breakout;
  el.hidden = !room;
  if (!room || !b) return;
  // Rebuilt only when its content changes, so a screen reader is not told the same again.
  const key = JSON.stringify([room, view.you.breakout_role, view.you.role]);
  if (el.dataset.key !== key) {
    el.dataset.key = key;
    clear(el);
    const role = view.you.breakout_role;
    append(el,
      h("h2", {}, isClinician(view.you.role) ? "Visiting: " : "Breakout room: ", h("span", { class: "room-name", text: room.name })),
      role ? h("p", { class: "role" }, "Your role: ", h("strong", { class: "role-name", text: cap(role) })) : null,
      room.scenario ? h("p", { class: "scenario" }, "Scenario: ", h("span", { class: "scenario-text", text: room.scenario })) : null,
      role === "observer" ? h("p", { class: "observer", text: "You are observing: listen-only. Others in the room do not hear or see you; you will share feedback afterwards." }) : null,
      h("p", { class: "countdown", role: "timer", "aria-live": "off" }),
    );
  }
  setText(el.querySelector(".countdown")!, countdownText(b.ends_at, b.closing_at ?? null));
}

/** Once a second: the countdown (the view only changes when something happens). */
export function tickBreakoutBanner(): void {
  const b = state.view?.breakouts;
  const cd = ui.breakout?.querySelector(".countdown");
  if (cd && b?.open) setText(cd, countdownText(b.ends_at, b.closing_at ?? null));
}
