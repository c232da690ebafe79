// The banner over the session while this person is in a private aside (a clinician and one
// client in a room of their own; the group goes on without them): for the client, that it
// is a private conversation with its therapist; for the clinician, with whom, since when,
// and "End aside" (both go back where they were).

import { append, clear, h } from "./dom";
import { emit } from "./connection";
import { state, ui } from "./state";
import { isClinician } from "./types";

export function buildAsideBanner(): HTMLElement {
  ui.aside = h("section", { class: "aside-banner", hidden: true, "aria-label": "Private aside" });
  return ui.aside;
}

export function renderAsideBanner(): void {
  const view = state.view;
  const el = ui.aside;
  if (!view || !el) return;
  const aside = view.you.aside;
  el.hidden = !aside;
  if (!aside) {
    delete el.dataset.key;
    return;
  }
  const clinician = isClinician(view.you.role);
  const other = view.participants.find((p) => p.id === aside.with);
  const key = JSON.stringify([aside, clinician, other?.name]);
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  clear(el);
  const since = new Date(aside.since).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (clinician) {
    append(el,
      h("h2", {}, "Aside with ", h("span", { class: "aside-with", text: other?.name ?? "a client" })),
      h("p", { class: "hint", text: `Private since ${since}: only the two of you see and hear each other. The group goes on without you.` }),
      h("button", { type: "button", class: "primary", text: "End aside", onclick: () => emit("aside_close", {}) }));
  } else {
    append(el,
      h("h2", { text: "A private conversation with your therapist" }),
      h("p", { class: "hint", text: "Only the two of you can see and hear each other. You will go back to the group afterwards." }));
  }
}
