// The therapist's role-play breakout planner and the controls of open breakouts.

import { append, clear, duration, h, setText } from "./dom";
import type { Ack } from "./media";
import { serverNow } from "./serverClock";
import { ROLES, isClinician, type PeerView, type PlanRoomWire, type View } from "./types";

type Emit = (event: string, data: unknown) => Promise<Ack>;
type PlanRoom = { name: string; scenario: string; members: Record<string, string> };

let uid = 0;
const nextId = (prefix: string) => `${prefix}-${++uid}`;

export class Planner {
  readonly el: HTMLElement;
  private readonly form: HTMLElement;
  private readonly live: HTMLElement;
  private readonly countdown: HTMLElement;
  private rooms: PlanRoom[] = [
    { name: "Room 1", scenario: "", members: {} },
    { name: "Room 2", scenario: "", members: {} },
  ];
  private mode: "manual" | "auto" = "manual";
  private minutes = 10;
  private autoCount = 2;
  private strategy: "random" | "balanced" = "balanced";
  private autoScenario = "";
  private clients: PeerView[] = [];
  private names = new Map<string, string>();
  private clientsKey = "";
  private liveKey = "";
  private view: View | null = null;

  constructor(private readonly emit: Emit) {
    this.form = h("div", { class: "planner-form" });
    this.countdown = h("p", { class: "countdown", role: "timer", "aria-live": "off" });
    this.live = h("div", { class: "planner-live" });
    this.el = h("div", { class: "planner" }, this.countdown, this.live, this.form);
    this.renderForm();
  }

  update(view: View): void {
    this.view = view;
    this.names = new Map(view.participants.map((p) => [p.id, p.name]));
    // Family members rehearse like clients; clinicians run the rooms.
    const clients = view.participants.filter((p) => !isClinician(p.role));
    const key = JSON.stringify([clients.map((p) => [p.id, p.name]), !!view.breakouts?.saved]);
    this.clients = clients;
    if (key !== this.clientsKey) {
      this.clientsKey = key;
      this.renderForm();
    }
    const b = view.breakouts;
    const liveKey = JSON.stringify([b?.open, b?.rooms, view.you.room]);
    if (liveKey !== this.liveKey) {
      this.liveKey = liveKey;
      this.renderLive();
    }
    this.tick();
  }

  tick(): void {
    const b = this.view?.breakouts;
    if (!b?.open) {
      setText(this.countdown, "Breakouts are not open.");
      return;
    }
    setText(this.countdown, countdownText(b.ends_at, b.closing_at ?? null));
  }

  // -- plan form ------------------------------------------------------------------------

  private renderForm(): void {
    clear(this.form);
    const modeName = nextId("mode");
    const modeRadio = (value: "manual" | "auto", label: string) => {
      const id = nextId("r");
      return h("span", { class: "radio" },
        h("input", { type: "radio", id, name: modeName, value, checked: this.mode === value,
          onchange: () => { this.mode = value; this.renderForm(); } }),
        h("label", { for: id, text: label }));
    };
    this.form.append(
      h("h3", { text: "Plan breakouts" }),
      h("fieldset", { class: "mode" }, h("legend", { text: "How to fill the rooms" }),
        modeRadio("manual", "I choose members and roles"), modeRadio("auto", "Automatic")),
    );
    if (this.mode === "manual") {
      this.rooms.forEach((room, index) => this.form.append(this.roomFieldset(room, index)));
      this.form.append(h("button", { type: "button", class: "secondary", text: "Add room",
        onclick: () => {
          this.rooms.push({ name: `Room ${this.rooms.length + 1}`, scenario: "", members: {} });
          this.renderForm();
        } }));
    } else {
      this.form.append(
        labelled("Number of rooms", h("input", { type: "number", min: 1, max: 20,
          value: String(this.autoCount),
          oninput: (e: Event) => { this.autoCount = Number((e.target as HTMLInputElement).value); } })),
        labelled("How to split", selectOf([["balanced", "Balanced"], ["random", "Random"]], this.strategy,
          (v) => { this.strategy = v as "random" | "balanced"; })),
        labelled("Scenario for every room", h("textarea", { rows: 2, maxlength: 500,
          value: this.autoScenario,
          oninput: (e: Event) => { this.autoScenario = (e.target as HTMLTextAreaElement).value; } })),
      );
    }
    const saved = !!this.view?.breakouts?.saved;
    append(this.form, 
      labelled("Minutes", h("input", { type: "number", min: 1, max: 120, value: String(this.minutes),
        oninput: (e: Event) => { this.minutes = Number((e.target as HTMLInputElement).value); } })),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", text: "Save plan",
          onclick: () => this.emit("breakouts_save", this.payload()) }),
        h("button", { type: "button", class: "primary", text: "Open breakouts",
          onclick: () => this.emit("breakouts_open", this.payload()) }),
        h("button", { type: "button", class: "secondary", text: "Open saved plan", disabled: !saved,
          onclick: () => this.emit("breakouts_open", { use_saved: true }) })),
      saved ? h("p", { class: "hint", text: "A saved plan is ready." }) : null,
    );
  }

  private roomFieldset(room: PlanRoom, index: number): HTMLElement {
    const members = h("ul", { class: "members" });
    if (this.clients.length === 0) members.append(h("li", { class: "hint", text: "No admitted clients yet." }));
    for (const client of this.clients) {
      const options: [string, string][] = [["", "Not in this room"], ...ROLES.map((r) => [r, cap(r)] as [string, string])];
      const select = selectOf(options, room.members[client.id] ?? "", (value) => {
        if (value) {
          for (const other of this.rooms) delete other.members[client.id];
          room.members[client.id] = value;
          this.renderForm();
        } else {
          delete room.members[client.id];
        }
      });
      select.setAttribute("aria-label", `Role of ${client.name} in room ${index + 1}`);
      members.append(h("li", {}, h("span", { class: "who", text: client.name }), select));
    }
    return h("fieldset", { class: "plan-room" },
      h("legend", { text: `Room ${index + 1}` }),
      labelled("Room name", h("input", { type: "text", maxlength: 80, value: room.name,
        oninput: (e: Event) => { room.name = (e.target as HTMLInputElement).value; } })),
      labelled("Scenario", h("textarea", { rows: 2, maxlength: 500, value: room.scenario,
        oninput: (e: Event) => { room.scenario = (e.target as HTMLTextAreaElement).value; } })),
      members,
      this.rooms.length > 1 ? h("button", { type: "button", class: "link",
        "aria-label": `Remove room ${index + 1} from the plan`, text: "Remove room",
        onclick: () => { this.rooms.splice(index, 1); this.renderForm(); } }) : null,
    );
  }

  private payload(): Record<string, unknown> {
    const minutes = Math.max(1, Math.round(this.minutes || 10));
    if (this.mode === "auto") {
      const out: Record<string, unknown> = {
        auto: { count: Math.max(1, Math.round(this.autoCount || 1)), strategy: this.strategy }, minutes,
      };
      if (this.autoScenario.trim()) out.scenario = this.autoScenario.trim();
      return out;
    }
    const rooms: PlanRoomWire[] = this.rooms.map((r, i) => ({
      name: r.name.trim() || `Room ${i + 1}`,
      participant_ids: Object.keys(r.members),
      roles: { ...r.members },
      scenario: r.scenario.trim(),
    }));
    return { rooms, minutes };
  }

  // -- open breakouts -------------------------------------------------------------------

  private renderLive(): void {
    clear(this.live);
    const b = this.view?.breakouts;
    const here = this.view?.you.room ?? "main";
    if (!b?.open) return;
    const list = h("ul", { class: "live-rooms" });
    for (const room of b.rooms) {
      const people = room.members.map((pid) => {
        const role = room.roles[pid];
        return `${this.names.get(pid) ?? pid}${role ? ` (${role})` : ""}`;
      });
      list.append(h("li", {},
        h("strong", { text: room.name }),
        h("span", { class: "hint", text: room.scenario ? ` — ${room.scenario}` : "" }),
        h("div", { class: "hint", text: people.length ? people.join(", ") : "Nobody" }),
        here === room.id
          ? h("span", { class: "badge", text: "You are here" })
          : h("button", { type: "button", class: "secondary", text: "Visit",
            "aria-label": `Visit ${room.name}`,
            onclick: () => this.emit("breakout_visit", { room: room.id }) }),
        Object.values(room.roles).includes("protagonist") && Object.values(room.roles).includes("antagonist")
          ? h("button", { type: "button", class: "secondary", text: "Swap roles",
            "aria-label": `Swap protagonist and antagonist in ${room.name}`,
            onclick: () => this.emit("breakout_swap", { room: room.id }) })
          : null));
    }
    const broadcast = h("input", { type: "text", maxlength: 500, placeholder: "Two minutes left" });
    const extend = h("input", { type: "number", min: 1, max: 60, value: "5" });
    const grace = h("input", { type: "number", min: 0, max: 300, value: "30" });
    append(this.live, 
      h("h3", { text: "Open breakouts" }),
      list,
      here !== "main" ? h("button", { type: "button", class: "secondary", text: "Back to the main room",
        onclick: () => this.emit("breakout_visit", { room: "main" }) }) : null,
      h("form", { class: "row", onsubmit: (e: Event) => {
        e.preventDefault();
        const text = broadcast.value.trim();
        if (text) void this.emit("breakout_broadcast", { text }).then((a) => { if (a.ok) broadcast.value = ""; });
      } }, labelled("Broadcast to all rooms", broadcast),
        h("button", { type: "submit", class: "secondary", text: "Broadcast" })),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", text: "Rotate roles",
          onclick: () => this.emit("breakout_rotate", {}) })),
      h("div", { class: "row" }, labelled("Extend by minutes", extend),
        h("button", { type: "button", class: "secondary", text: "Extend",
          onclick: () => this.emit("breakout_extend", { minutes: Math.max(1, Number(extend.value) || 5) }) })),
      h("div", { class: "row" }, labelled("Grace period in seconds", grace),
        h("button", { type: "button", class: "danger", text: "Close breakouts",
          onclick: () => this.emit("breakouts_close", { grace_s: Math.max(0, Number(grace.value) || 0) }) })),
    );
  }
}

export function countdownText(endsAt: string | null, closingAt: string | null): string {
  if (closingAt) return `Rooms close in ${duration(Date.parse(closingAt) - serverNow())}`;
  if (!endsAt) return "Breakouts are open.";
  return `Ends in ${duration(Date.parse(endsAt) - serverNow())}`;
}

export function cap(word: string): string {
  return word ? word[0].toUpperCase() + word.slice(1) : word;
}

export function labelled(text: string, control: HTMLElement): HTMLElement {
  const id = control.id || nextId("f");
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id, text }), control);
}

export function selectOf(options: [string, string][], value: string, onChange: (v: string) => void): HTMLSelectElement {
  const select = h("select", { onchange: (e: Event) => onChange((e.target as HTMLSelectElement).value) });
  for (const [v, label] of options) select.append(h("option", { value: v, text: label, selected: v === value }));
  return select;
}
