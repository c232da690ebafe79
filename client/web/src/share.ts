// Screen share and talk time (issue 14). A share is a second video track: the relay peer
// offers a trackless screen section from the start (marked `a=content:slides`, media.ts),
// and sharing only puts the getDisplayMedia track on it (no renegotiation). The server
// decides who shares (`share_start`, one per room; clinicians stop anyone's with
// `share_stop`) and the relay forwards the screen only while the share holds; everyone in
// the room shows it large above the grid. Clinicians also see each person's share of the
// group's talk time (`view.talk`, measured by the relay from the RTP audio level).

import { h, setText, syncList } from "./dom";
import { emit } from "./connection";
import { state, ui } from "./state";
import { toast } from "./toast";
import { isClinician, isObserver, type PeerView } from "./types";

/** The view's `rev` when our `share_start` was acknowledged: a later view without
 * `you.sharing` means the share ended (a therapist stopped it, or we moved). */
let shareRev = -1;

/** Pick a screen or window and share it in one's room. */
export async function startShare(): Promise<void> {
  if (state.screenTrack) return;
  let stream: MediaStream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch {
    toast("Screen sharing did not start.", "info");
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (!track) return;
  const ack = await emit("share_start", {});
  if (!ack.ok) {
    track.stop();
    toast(ack.error?.message ? `Cannot share: ${ack.error.message}.` : "Cannot share now.");
    return;
  }
  shareRev = state.view?.rev ?? 0;
  state.screenTrack = track;
  // The browser's own "Stop sharing" bar ends the track: end the share with it.
  track.addEventListener("ended", () => { if (state.screenTrack === track) void stopShare(); });
  state.peer?.setScreen(track);
  renderShare();
}

/** End one's own share, or (clinicians) someone else's by the id this page knows them by. */
export async function stopShare(participantId?: string): Promise<void> {
  const you = state.view?.you;
  if (participantId && you && participantId !== you.id) {
    const ack = await emit("share_stop", { participant_id: participantId });
    if (!ack.ok) toast(ack.error?.message ?? "That did not work; try again.");
    return;
  }
  endLocalShare();
  await emit("share_stop", {});
}

/** Stop capturing (the share ended, or media is being torn down). */
export function endLocalShare(): void {
  const track = state.screenTrack;
  state.screenTrack = null;
  state.peer?.setScreen(null);
  track?.stop();
  if (ui.shareStage) renderShare();
}

/** The share stage above the grid, and the end of our capture once the server says our
 * share is over. Called on every view and whenever a stream arrives. */
export function renderShare(): void {
  const view = state.view;
  const stage = ui.shareStage;
  if (!view || !stage) return;
  if (state.screenTrack && !view.you.sharing && view.rev > shareRev) {
    endLocalShare();
    return;
  }
  const share = view.share ?? null;
  stage.hidden = !share;
  stage.dataset.sharer = share?.id ?? "";
  const mine = !!share && share.handle === view.you.handle;
  const video = ui.shareVideo as HTMLVideoElement;
  const stream = !share ? null : mine
    ? (state.screenTrack ? ownScreen(state.screenTrack) : null)
    : state.streams.get(share.stream) ?? null;
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    if (stream) video.play().catch(() => undefined);
  }
  const who = share ? view.participants.find((p) => p.id === share.id) : undefined;
  const name = mine ? "You are" : `${who?.name ?? "Someone"} is`;
  setText(ui.shareCaption, share ? `${name} sharing the screen` : "");
  const stop = ui.shareStop as HTMLButtonElement;
  stop.hidden = !share || !(mine || isClinician(view.you.role));
  setText(stop, mine ? "Stop sharing" : `Stop ${who?.name ?? "this"}'s share`);
  renderShareButton();
}

let ownScreenStream: MediaStream | null = null;

function ownScreen(track: MediaStreamTrack): MediaStream {
  if (!ownScreenStream || ownScreenStream.getVideoTracks()[0] !== track) {
    ownScreenStream = new MediaStream([track]);
  }
  return ownScreenStream;
}

/** The stage (hidden until someone in the room shares). */
export function buildShareStage(): HTMLElement {
  ui.shareVideo = h("video", { autoplay: true, playsInline: true, muted: true });
  ui.shareCaption = h("span", { class: "share-caption" });
  ui.shareStop = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => {
    const share = state.view?.share;
    if (share) void stopShare(share.id);
  } });
  ui.shareStage = h("figure", { class: "share-stage", hidden: true, "aria-label": "Shared screen" },
    ui.shareVideo, h("figcaption", {}, ui.shareCaption, ui.shareStop));
  return ui.shareStage;
}

/** The Share button (controls), and for clinicians whether clients may share. */
export function buildShareControls(therapist: boolean): HTMLElement[] {
  ui.share = h("button", { type: "button", class: "control", text: "Share screen", onclick: () => {
    if (state.screenTrack) void stopShare();
    else void startShare();
  } });
  if (!therapist) return [ui.share];
  ui.sharePolicy = h("button", { type: "button", class: "control", onclick: () =>
    emit("share_policy", { clients_may_share: !state.view?.session.clients_may_share }) });
  return [ui.share, ui.sharePolicy];
}

function renderShareButton(): void {
  const view = state.view;
  if (!view || !ui.share) return;
  const share = view.share ?? null;
  const mine = !!state.screenTrack;
  ui.share.hidden = !view.you.may_share || isObserver(view.you.role);
  setText(ui.share, mine ? "Stop sharing" : "Share screen");
  ui.share.setAttribute("aria-pressed", String(mine));
  (ui.share as HTMLButtonElement).disabled = !mine && !!share;
  if (ui.sharePolicy) {
    const allowed = !!view.session.clients_may_share;
    setText(ui.sharePolicy, allowed ? "Stop clients sharing" : "Let clients share");
    ui.sharePolicy.setAttribute("aria-pressed", String(allowed));
  }
}

// -- talk time (clinicians) -------------------------------------------------------------------

type TalkItem = { id: string; name: string; seconds: number; share: number };

/** The "Talk time" panel's list. */
export function buildTalkPanel(): HTMLElement[] {
  ui.talk = h("ul", { class: "list talk", "aria-label": "Talk time" });
  return [h("p", { class: "hint", text: "Share of the group's speaking time, from the audio level." }), ui.talk];
}

export function renderTalk(): void {
  const view = state.view;
  if (!view || !ui.talk) return;
  const talk = view.talk ?? {};
  const people = view.participants.filter((p: PeerView) => p.status === "admitted" && !isObserver(p.role));
  const total = people.reduce((sum, p) => sum + (talk[p.id] ?? 0), 0);
  const items: TalkItem[] = people.map((p) => ({
    id: p.id, name: p.name, seconds: talk[p.id] ?? 0,
    share: total > 0 ? Math.round(((talk[p.id] ?? 0) / total) * 100) : 0,
  }));
  syncList(ui.talk, items, (t) => t.id, createTalkItem, updateTalkItem);
}

function createTalkItem(t: TalkItem): HTMLElement {
  return h("li", { class: "talk-row", "data-pid": t.id },
    h("span", { class: "name" }), h("span", { class: "talk-bar" }, h("span", { class: "talk-fill" })),
    h("span", { class: "talk-share" }));
}

function updateTalkItem(el: HTMLElement, t: TalkItem): void {
  setText(el.querySelector(".name")!, t.name);
  const minutes = Math.floor(t.seconds / 60);
  const seconds = Math.floor(t.seconds % 60);
  const spoken = t.seconds < 60 ? `${t.seconds.toFixed(1)} s` : `${minutes}:${String(seconds).padStart(2, "0")}`;
  setText(el.querySelector(".talk-share")!, `${t.share}% · ${spoken}`);
  (el.querySelector(".talk-fill") as HTMLElement).style.width = `${t.share}%`;
  el.dataset.share = String(t.share);
  el.dataset.seconds = String(t.seconds);
  el.classList.toggle("silent", t.seconds === 0);
  el.setAttribute("aria-label", `${t.name}: ${t.share}% of the talk time`);
}
