// The video grid: one tile per participant in the same room as this person (own tile first),
// with name, initials (shown when there is no picture) and badges.

import { clear, h, setText, syncList } from "../dom";
import { sending } from "../mutes";
import { cap } from "../planner";
import { state, ui } from "../state";

type TileItem = { id: string; handle: string; name: string; self: boolean; muted: { audio: boolean; video: boolean }; hand: boolean; role: string; breakoutRole: string | null };

export function renderTiles(): void {
  const view = state.view;
  if (!view || !ui.grid) return;
  const { local } = state;
  const room = view.you.room;
  const items: TileItem[] = [{
    id: view.you.id, handle: view.you.handle ?? "", name: `${view.you.name?.split(" ")[0] ?? "You"} (you)`, self: true,
    muted: { audio: !sending("audio") || !local?.getAudioTracks().length,
      video: !sending("video") || !local?.getVideoTracks().length },
    hand: !!view.you.hand, role: view.you.role ?? "client", breakoutRole: view.you.breakout_role,
  }];
  for (const p of view.participants) {
    if (p.handle === view.you.handle || p.room !== room || p.status !== "admitted") continue;
    items.push({ id: p.id, handle: p.handle, name: p.name, self: false, muted: p.muted, hand: p.hand, role: p.role,
      breakoutRole: p.breakout_role ?? null });
  }
  syncList(ui.grid, items, (t) => t.handle, createTile, updateTile);
  ui.grid.dataset.count = String(items.length);
}

function createTile(t: TileItem): HTMLElement {
  const video = h("video", { autoplay: true, playsInline: true, muted: t.self });
  const initials = h("div", { class: "initials", "aria-hidden": "true" });
  return h("figure", { class: `tile${t.self ? " self" : ""}`, "data-pid": t.id, "data-handle": t.handle },
    video, initials,
    h("figcaption", {}, h("span", { class: "name" }), h("span", { class: "badges" })));
}

function updateTile(el: HTMLElement, t: TileItem): void {
  const video = el.querySelector("video")!;
  const local = state.local;
  const stream = t.self ? (local && local.getVideoTracks().length ? local : null) : state.streams.get(t.handle) ?? null;
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    if (stream) video.play().catch(() => undefined);
  }
  setText(el.querySelector(".name")!, t.name);
  setText(el.querySelector(".initials")!, t.name.trim().slice(0, 1).toUpperCase());
  el.setAttribute("aria-label", `${t.name}${t.muted.audio ? ", microphone off" : ""}${t.muted.video ? ", camera off" : ""}${t.hand ? ", hand raised" : ""}`);
  el.classList.toggle("video-off", t.muted.video || !stream || stream.getVideoTracks().length === 0);
  el.classList.toggle("hand-up", t.hand);
  const badges: string[] = [];
  if (t.role === "therapist") badges.push("Therapist");
  if (t.role === "co_therapist") badges.push("Co-therapist");
  if (t.role === "observer") badges.push("Observing");  // disclosed to the group
  if (t.breakoutRole) badges.push(cap(t.breakoutRole));
  if (t.muted.audio) badges.push("Mic off");
  if (t.muted.video) badges.push("Camera off");
  if (t.hand) badges.push("Hand raised");
  const holder = el.querySelector(".badges")!;
  const key = badges.join("|");
  if ((holder as HTMLElement).dataset.key !== key) {
    (holder as HTMLElement).dataset.key = key;
    clear(holder);
    for (const b of badges) holder.append(h("span", { class: `badge b-${b.split(" ").pop()!.toLowerCase()}`, text: b }));
  }
  el.dataset.audioMuted = String(t.muted.audio);
  el.dataset.videoMuted = String(t.muted.video);
  el.dataset.hand = String(t.hand);
}
