// The therapist's side panels in the session: second devices (someone's link opened on
// another device while they are here: let it take their place, or keep the first), waiting
// list (admit, deny with a reason, message one person or everyone waiting, admit all),
// expected but absent, participants (mute, stop camera, remove, move to a room) and the
// breakout planner (planner.ts).

import { clear, duration, h, setText, syncList } from "../dom";
import { emit } from "../connection";
import { Planner, labelled, selectOf } from "../planner";
import { section } from "../screens/session";
import { serverNow } from "../serverClock";
import { state, ui } from "../state";
import { toast } from "../toast";
import { twoStep } from "../twoStep";
import { isAsideRoom, isClinician, isObserver, roleLabel, type CheckinView, type PeerView, type SecondDeviceView, type WaitingView } from "../types";

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
  // Those who owe a check-in stay waiting; the ack says how many (`left_waiting`, `message`).
  ui.admitAll = h("button", { type: "button", class: "primary", text: "Admit all", onclick: () => emit("admit_all", {}).then((a) => {
    const message = (a as { message?: unknown }).message;
    if (a.ok && typeof message === "string") toast(message, "info");
  }) });
  ui.expected = h("ul", { class: "list" });
  ui.people = h("ul", { class: "list" });
  ui.secondDevices = h("ul", { class: "list" });
  ui.secondPanel = section("Second devices", "second-devices",
    h("p", { class: "hint", text: "Their link was opened on another device while they are here." }),
    ui.secondDevices);
  ui.secondPanel.hidden = true;
  state.planner = new Planner(emit);
  side.append(
    ui.secondPanel,
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
    (x) => h("li", { class: x.id ? "" : "hint", text: x.id ? `${x.name}${roleLabel(x.role) ? ` (${roleLabel(x.role)})` : ""}` : "Everyone invited is here." }),
    () => undefined);
  const others = view.participants.filter((p) => p.id !== view.you.id);
  syncList(ui.people, others, (p) => p.id, createPersonRow, updatePersonRow);
  const second = view.second_devices ?? [];
  ui.secondPanel.hidden = second.length === 0;
  syncList(ui.secondDevices, second, (d) => d.id, createSecondDeviceRow, updateSecondDeviceRow);
  state.planner?.update(view);
}

/** Once a second: the wait times in the waiting list and of second devices. */
export function tickConsole(): void {
  ui.waitingList?.querySelectorAll<HTMLElement>(".waiting-row").forEach(setWaitTime);
  ui.secondDevices?.querySelectorAll<HTMLElement>(".second-row").forEach(setWaitTime);
}

function createSecondDeviceRow(d: SecondDeviceView): HTMLElement {
  const who = d.id === state.view?.you.id ? "You" : d.name;
  const decide = (allow: boolean) => emit("second_device", { participant_id: d.id, allow });
  return h("li", { class: "second-row" },
    h("span", { class: "name", text: who }),
    h("span", { class: "what hint", text: " · second device" }),
    h("span", { class: "since hint" }),
    h("span", { class: "row" },
      h("button", { type: "button", class: "primary", text: "Allow",
        "aria-label": `Let ${who === "You" ? "your" : `${d.name}'s`} second device take the place`,
        onclick: () => decide(true) }),
      h("button", { type: "button", class: "secondary", text: "Keep the first",
        "aria-label": `Keep ${who === "You" ? "yourself" : d.name} on the first device`,
        onclick: () => decide(false) })));
}

function updateSecondDeviceRow(el: HTMLElement, d: SecondDeviceView): void {
  el.dataset.since = d.since ?? "";
  setWaitTime(el);
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
    h("span", { class: "name", text: w.role === "family" ? `${w.name} (family)` : w.name }),
    h("span", { class: "since hint" }),
    h("span", { class: "checkin-state" }),
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
  const owes = !w.checkin && !!state.view?.session.checkin_required;
  const line = el.querySelector<HTMLElement>(".checkin-state")!;
  setText(line, checkinText(w.checkin ?? null) + (owes ? ": cannot be admitted until they do" : ""));
  line.className = `checkin-state ${w.checkin ? (w.checkin.consent ? "ok" : "warn") : "hint"}`;
  el.dataset.checkedIn = String(!!w.checkin);
  ui.waitingList.querySelector(".empty")?.remove();
  setWaitTime(el);
}

/** What a therapist reads of a check-in: "Checked in: home, CA · consent · pledge". */
export function checkinText(c: CheckinView | null): string {
  if (!c) return "Not checked in";
  return `Checked in: ${c.location === "home" ? "home" : "elsewhere"}, ${c.region} · `
    + `${c.consent ? "telehealth consent" : "NO telehealth consent"}${c.pledge ? " · pledge" : ""}`;
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

/** The part of a person's mutes clinicians hold (older servers: all of `muted`). Their own
 * mute is theirs: the buttons set or lift only the clinicians' one. */
function heldMutes(p: PeerView): { audio: boolean; video: boolean } {
  return p.muted_by_therapist ?? p.muted;
}

function muteFact(p: PeerView, kind: "audio" | "video", text: string): string {
  if (!p.muted[kind]) return "";
  return heldMutes(p)[kind] ? text : `${text} (by themselves)`;
}

function updatePersonRow(el: HTMLElement, p: PeerView): void {
  const view = state.view;
  if (!view) return;
  const roomName = p.room && p.room !== "main" ? view.breakouts?.rooms.find((r) => r.id === p.room)?.name ?? p.room : "main room";
  setText(el.querySelector(".name")!, p.name);
  const facts = [roleLabel(p.role), isClinician(p.role) ? "" : checkinText(p.checkin ?? null),
    p.hand ? "hand raised" : "", muteFact(p, "audio", "mic muted"),
    muteFact(p, "video", "camera off"), p.connected === false ? "reconnecting" : "",
    view.second_devices?.some((d) => d.id === p.id) ? "second device waiting" : "",
    isAsideRoom(p.room) ? "in an aside" : view.breakouts?.open ? `in ${roomName}` : ""].filter(Boolean);
  setText(el.querySelector(".state")!, facts.join(" · "));
  // The buttons are rebuilt only when what they show changes: a half-done two-step survives.
  const inAside = !!view.you.aside;  // one aside at a time per clinician: no "Aside" meanwhile
  const key = JSON.stringify([p.muted, p.muted_by_therapist, p.role, p.name, view.breakouts?.open, view.breakouts?.rooms.map((r) => [r.id, r.name]), p.room, inAside]);
  if (el.dataset.built === key) return;
  el.dataset.built = key;
  const actions = el.querySelector(".actions")!;
  clear(actions);
  if (isClinician(p.role)) return;
  const remove = () => twoStep("Remove", `Confirm: remove ${p.name}`, "danger", () => emit("remove", { participant_id: p.id }), `Remove ${p.name}`);
  if (isObserver(p.role)) {
    actions.append(remove());  // an observer sends nothing: nothing to mute or move
    return;
  }
  const held = heldMutes(p);
  const aside = isAsideRoom(p.room)
    ? [h("button", { type: "button", class: "secondary", text: "End aside", "aria-label": `End the aside with ${p.name}`,
      onclick: () => emit("aside_close", { participant_id: p.id }) })]
    : inAside ? [] : [h("button", { type: "button", class: "secondary", text: "Aside", "aria-label": `Aside with ${p.name}`,
      onclick: () => emit("aside_open", { participant_id: p.id }) })];
  actions.append(
    h("button", { type: "button", class: "secondary", text: held.audio ? "Unmute mic" : "Mute mic",
      "aria-label": `${held.audio ? "Unmute" : "Mute"} ${p.name}'s microphone`,
      onclick: () => emit("mute", { participant_id: p.id, kind: "audio", muted: !held.audio }) }),
    h("button", { type: "button", class: "secondary", text: held.video ? "Allow camera" : "Stop camera",
      "aria-label": `${held.video ? "Allow" : "Stop"} ${p.name}'s camera`,
      onclick: () => emit("mute", { participant_id: p.id, kind: "video", muted: !held.video }) }),
    remove(),
    ...aside,
    h("button", { type: "button", class: "secondary", text: "Back to waiting room",
      "aria-label": `Send ${p.name} back to the waiting room`,
      onclick: () => emit("send_to_waiting", { participant_id: p.id }) }),
  );
  if (view.breakouts?.open && !isAsideRoom(p.room)) {
    const options: [string, string][] = [["main", "Main room"], ...view.breakouts.rooms.map((r) => [r.id, r.name] as [string, string])];
    const move = selectOf(options, p.room ?? "main", (room) => { void emit("breakout_move", { participant_id: p.id, room }); });
    move.setAttribute("aria-label", `Move ${p.name} to a room`);
    actions.append(move);
  }
}
