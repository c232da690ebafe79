// The therapist's side panels in the session: waiting list (admit, deny with a reason,
// message one person or everyone waiting, admit all), expected but absent, participants
// (mute, stop camera, remove, move to a room) and the breakout planner (planner.ts).

import { clear, duration, h, setText, syncList } from "../dom";
import { emit } from "../connection";
import { Planner, labelled, selectOf } from "../planner";
import { section } from "../screens/session";
import { serverNow } from "../serverClock";
import { state, ui } from "../state";
import { toast } from "../toast";
import { twoStep } from "../twoStep";
import type { PeerView, WaitingView } from "../types";

/** Build the console's panels into the session's side column (once per session screen). */
export function buildConsole(side: HTMLElement): void {
  ui.waitingList = h("ul", { class: "list" });
  const waitText = h("input", { type: "text", maxlength: 2000, autocomplete: "off" });
  ui.waitSend = h("button", { type: "submit", class: "secondary", text: "Send to waiting room" });
  ui.waitForm = h("form", { class: "row wait-message", onsubmit: (e: Event) => {
    e.preventDefault();
    const text = waitText.value.trim();
    const count = state.view?.waiting?.length ?? 0;
    if (!text || !count) return;
    void emit("waiting_message", { text }).then((a) => {
      if (!a.ok) return;
      waitText.value = "";
      toast(`Message sent to ${count === 1 ? "the person" : `all ${count} people`} waiting.`, "info");
    });
  } }, labelled("Message to everyone waiting", waitText), ui.waitSend);
  ui.admitAll = h("button", { type: "button", class: "primary", text: "Admit all", onclick: () => emit("admit_all", {}) });
  ui.expected = h("ul", { class: "list" });
  ui.people = h("ul", { class: "list" });
  state.planner = new Planner(emit);
  side.append(
    section("Waiting room", "waiting", ui.admitAll, ui.waitingList, ui.waitForm),
    section("Expected, not here", "expected", ui.expected),
    section("Participants", "people", ui.people),
    section("Breakouts", "breakouts", state.planner.el),
  );
}

export function renderConsole(): void {
  const view = state.view;
  if (!view) return;
  const waiting = view.waiting ?? [];
  setText(ui.admitAll, `Admit all (${waiting.length})`);
  (ui.admitAll as HTMLButtonElement).disabled = waiting.length === 0;
  (ui.waitSend as HTMLButtonElement).disabled = waiting.length === 0;
  syncList(ui.waitingList, waiting, (w) => w.id, createWaitingRow, updateWaitingRow);
  if (!waiting.length && !ui.waitingList.querySelector(".empty")) ui.waitingList.append(h("li", { class: "empty hint", text: "Nobody is waiting." }));
  syncList(ui.expected, (view.expected ?? []).length ? view.expected! : [{ id: "", name: "", role: "client" as const }],
    (x) => x.id || "none",
    (x) => h("li", { class: x.id ? "" : "hint", text: x.id ? `${x.name}${x.role === "therapist" ? " (therapist)" : ""}` : "Everyone invited is here." }),
    () => undefined);
  const others = view.participants.filter((p) => p.id !== view.you.id);
  syncList(ui.people, others, (p) => p.id, createPersonRow, updatePersonRow);
  state.planner?.update(view);
}

/** Once a second: the wait times in the waiting list. */
export function tickConsole(): void {
  ui.waitingList?.querySelectorAll<HTMLElement>(".waiting-row").forEach(setWaitTime);
}

function createWaitingRow(w: WaitingView): HTMLElement {
  const reason = h("input", { type: "text", maxlength: 500, placeholder: "Shown to them" });
  const denyBox = h("div", { class: "deny-box", hidden: true },
    labelled(`Reason for ${w.name}`, reason),
    h("button", { type: "button", class: "danger", text: "Deny", "aria-label": `Deny ${w.name}`,
      onclick: () => emit("deny", { participant_id: w.id, reason: reason.value.trim() }) }),
    h("button", { type: "button", class: "link", text: "Cancel", onclick: () => { denyBox.hidden = true; } }));
  const message = h("input", { type: "text", maxlength: 2000, autocomplete: "off" });
  const messageBox = h("form", { class: "deny-box message-box", hidden: true, onsubmit: (e: Event) => {
    e.preventDefault();
    const text = message.value.trim();
    if (!text) return;
    void emit("waiting_message", { text, participant_id: w.id }).then((a) => {
      if (!a.ok) return;
      message.value = "";
      messageBox.hidden = true;
      toast(`Message sent to ${w.name}.`, "info");
    });
  } },
    labelled(`Message to ${w.name}`, message),
    h("button", { type: "submit", class: "primary", text: "Send", "aria-label": `Send message to ${w.name}` }),
    h("button", { type: "button", class: "link", text: "Cancel", onclick: () => { messageBox.hidden = true; } }));
  return h("li", { class: "waiting-row" },
    h("span", { class: "name", text: w.name }),
    h("span", { class: "since hint" }),
    h("span", { class: "row" },
      h("button", { type: "button", class: "primary", text: "Admit", "aria-label": `Admit ${w.name}`,
        onclick: () => emit("admit", { participant_id: w.id }) }),
      h("button", { type: "button", class: "secondary", text: "Deny…", "aria-label": `Deny ${w.name} with a reason`,
        onclick: () => { denyBox.hidden = false; reason.focus(); } }),
      h("button", { type: "button", class: "secondary", text: "Message…", "aria-label": `Message ${w.name}`,
        onclick: () => { messageBox.hidden = false; message.focus(); } })),
    messageBox, denyBox);
}

function updateWaitingRow(el: HTMLElement, w: WaitingView): void {
  el.dataset.since = w.since ?? "";
  ui.waitingList.querySelector(".empty")?.remove();
  setWaitTime(el);
}

function setWaitTime(el: HTMLElement): void {
  const since = el.dataset.since ? Date.parse(el.dataset.since) : NaN;
  setText(el.querySelector(".since")!, Number.isNaN(since) ? "" : `waiting ${duration(serverNow() - since)}`);
}

function createPersonRow(_p: PeerView): HTMLElement {
  const row = h("li", { class: "person-row" }, h("span", { class: "name" }), h("span", { class: "state hint" }),
    h("span", { class: "row actions" }));
  row.dataset.built = "";
  return row;
}

function updatePersonRow(el: HTMLElement, p: PeerView): void {
  const view = state.view;
  if (!view) return;
  const roomName = p.room && p.room !== "main" ? view.breakouts?.rooms.find((r) => r.id === p.room)?.name ?? p.room : "main room";
  setText(el.querySelector(".name")!, p.name);
  const facts = [p.role === "therapist" ? "therapist" : "", p.hand ? "hand raised" : "", p.muted.audio ? "mic muted" : "",
    p.muted.video ? "camera off" : "", p.connected === false ? "reconnecting" : "", view.breakouts?.open ? `in ${roomName}` : ""].filter(Boolean);
  setText(el.querySelector(".state")!, facts.join(" · "));
  // The buttons are rebuilt only when what they show changes: a half-done two-step survives.
  const key = JSON.stringify([p.muted, p.role, p.name, view.breakouts?.open, view.breakouts?.rooms.map((r) => [r.id, r.name]), p.room]);
  if (el.dataset.built === key) return;
  el.dataset.built = key;
  const actions = el.querySelector(".actions")!;
  clear(actions);
  if (p.role === "therapist") return;
  actions.append(
    h("button", { type: "button", class: "secondary", text: p.muted.audio ? "Unmute mic" : "Mute mic",
      "aria-label": `${p.muted.audio ? "Unmute" : "Mute"} ${p.name}'s microphone`,
      onclick: () => emit("mute", { participant_id: p.id, kind: "audio", muted: !p.muted.audio }) }),
    h("button", { type: "button", class: "secondary", text: p.muted.video ? "Allow camera" : "Stop camera",
      "aria-label": `${p.muted.video ? "Allow" : "Stop"} ${p.name}'s camera`,
      onclick: () => emit("mute", { participant_id: p.id, kind: "video", muted: !p.muted.video }) }),
    twoStep("Remove", `Confirm: remove ${p.name}`, "danger", () => emit("remove", { participant_id: p.id }), `Remove ${p.name}`),
  );
  if (view.breakouts?.open) {
    const options: [string, string][] = [["main", "Main room"], ...view.breakouts.rooms.map((r) => [r.id, r.name] as [string, string])];
    const move = selectOf(options, p.room ?? "main", (room) => { void emit("breakout_move", { participant_id: p.id, room }); });
    move.setAttribute("aria-label", `Move ${p.name} to a room`);
    actions.append(move);
  }
}
