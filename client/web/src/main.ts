// Circle in the browser: one app for clients and therapists (the role comes from the
// `state` view). Screens: device check -> waiting room -> session (grid, chat, controls,
// breakouts); therapists also get the waiting list, participant controls and the planner.
// Everything the server sends is rendered as text (textContent), never as HTML.

import { io, type Socket } from "socket.io-client";
import "./style.css";
import { append, clear, duration, h, setText, syncList } from "./dom";
import { RelayPeer, type Ack, type SignalMessage } from "./media";
import { idleConfig, idleFor, pauseActivity, resetIdle, watchActivity } from "./idle";
import { Planner, cap, countdownText, labelled, selectOf } from "./planner";
import type { ChatMessage, Notice, PeerView, View, WaitingView } from "./types";

const app = document.getElementById("app")!;

// -- state ----------------------------------------------------------------------------------

let token = "";
let iceServers: RTCIceServer[] = [];
let socket: Socket | null = null;
let view: View | null = null;
let screen = "";
let local: MediaStream | null = null;
let audioOnly = false;
let micId = "";
let camId = "";
let selfMuted = { audio: false, video: false };
let peer: RelayPeer | null = null;
const streams = new Map<string, MediaStream>();
let connectedOnce = false;
let waitingSince = 0;
let lastNotice: Notice | null = null;
let finished = false;
const ui: Record<string, HTMLElement> = {};
let planner: Planner | null = null;
let meterStop: (() => void) | null = null;
let opening: Promise<void> = Promise.resolve();
let idlePrompt: { dialog: HTMLDialogElement; count: HTMLElement; deadline: number } | null = null;
let signingOut = false;

// -- boot -----------------------------------------------------------------------------------

function readToken(): string {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem("circle.token", fromUrl);
    // Keep the token out of the address bar, history and screenshots.
    history.replaceState(null, "", location.pathname);
    return fromUrl;
  }
  return sessionStorage.getItem("circle.token") ?? "";
}

token = readToken();
watchActivity();
if (!token) {
  endScreen("This link is incomplete", "Open the link from your invitation again, or ask the clinic for a new one.");
} else {
  void deviceCheck();
}
setInterval(tick, 1000);

// -- device check ---------------------------------------------------------------------------

async function deviceCheck(): Promise<void> {
  show("device");
  const preview = h("video", { class: "preview", autoplay: true, playsInline: true, muted: true,
    "aria-label": "Your camera preview" });
  const meter = h("meter", { min: 0, max: 1, value: 0, "aria-label": "Microphone level" });
  const problem = h("p", { class: "problem", role: "status" });
  const camSelect = h("select", { onchange: () => { camId = camSelect.value; void reopen(); } });
  const micSelect = h("select", { onchange: () => { micId = micSelect.value; void reopen(); } });
  const audioOnlyBox = h("input", { type: "checkbox", id: "audio-only",
    onchange: () => { audioOnly = audioOnlyBox.checked; void reopen(); } });
  const joinButton = h("button", { type: "button", class: "primary big", text: "Join",
    onclick: () => { joinButton.disabled = true; void opening.then(join); } });
  app.append(h("section", { class: "card device", "aria-labelledby": "device-title" },
    h("h1", { id: "device-title", text: "Check your camera and microphone" }),
    h("p", { class: "hint", text: "Nobody sees or hears you until you join." }),
    preview,
    h("div", { class: "field" }, h("span", { class: "label", text: "Microphone level" }), meter),
    problem,
    labelled("Camera", camSelect),
    labelled("Microphone", micSelect),
    h("div", { class: "check" }, audioOnlyBox, h("label", { for: "audio-only", text: "Join with audio only (camera off)" })),
    joinButton,
  ));

  // One device change at a time: a late getUserMedia must not overwrite a newer choice.
  function reopen(): Promise<void> {
    opening = opening.then(reopenNow, reopenNow);
    return opening;
  }
  async function reopenNow(): Promise<void> {
    await openDevices(problem);
    preview.srcObject = local && local.getVideoTracks().length ? local : null;
    preview.hidden = !preview.srcObject;
    if (preview.srcObject) preview.play().catch(() => undefined);
    meterStop?.();
    meterStop = startMeter(meter);
    await fillDevices(camSelect, micSelect);
  }
  await reopen();
  joinButton.focus();
}

async function openDevices(problem: HTMLElement): Promise<void> {
  local?.getTracks().forEach((t) => t.stop());
  local = null;
  setText(problem, "");
  const audio: MediaTrackConstraints | boolean = micId ? { deviceId: { exact: micId } } : true;
  const video: MediaTrackConstraints | false = audioOnly ? false
    : { ...(camId ? { deviceId: { exact: camId } } : {}), width: { ideal: 640 }, height: { ideal: 480 } };
  if (!navigator.mediaDevices?.getUserMedia) {
    setText(problem, "This browser cannot use a camera or microphone here. You can still join and listen.");
    return;
  }
  try {
    local = await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch {
    try {
      local = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      if (!audioOnly) setText(problem, "Your camera is not available: you will join with audio only.");
    } catch {
      setText(problem, "Your camera and microphone are not available. You can still join and listen.");
    }
  }
}

async function fillDevices(cam: HTMLSelectElement, mic: HTMLSelectElement): Promise<void> {
  let devices: MediaDeviceInfo[] = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    /* no devices */
  }
  const fill = (select: HTMLSelectElement, kind: MediaDeviceKind, current: string, track?: MediaStreamTrack) => {
    clear(select);
    const active = current || track?.getSettings().deviceId || "";
    devices.filter((d) => d.kind === kind).forEach((d, i) => select.append(h("option", {
      value: d.deviceId, text: d.label || `${kind === "videoinput" ? "Camera" : "Microphone"} ${i + 1}`,
      selected: d.deviceId === active })));
    select.disabled = select.options.length === 0;
  };
  fill(cam, "videoinput", camId, local?.getVideoTracks()[0]);
  fill(mic, "audioinput", micId, local?.getAudioTracks()[0]);
  cam.disabled = cam.disabled || audioOnly;
}

function startMeter(meter: HTMLMeterElement): () => void {
  const track = local?.getAudioTracks()[0];
  if (!track) return () => undefined;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const data = new Uint8Array(analyser.fftSize);
  const resume = () => { void ctx.resume().catch(() => undefined); };
  document.addEventListener("pointerdown", resume, { once: true });
  let running = true;
  const loop = () => {
    if (!running) return;
    analyser.getByteTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += ((v - 128) / 128) ** 2;
    meter.value = Math.min(1, Math.sqrt(sum / data.length) * 4);
    requestAnimationFrame(loop);
  };
  loop();
  return () => { running = false; void ctx.close().catch(() => undefined); };
}

// -- connection -----------------------------------------------------------------------------

function join(): void {
  meterStop?.();
  meterStop = null;
  waitingSince = Date.now();
  show("connecting");
  app.append(h("section", { class: "card" }, h("h1", { text: "Connecting…" }),
    h("p", { class: "hint", text: "One moment." })));
  const s = io({ auth: { token }, transports: ["websocket"], reconnectionDelay: 500,
    reconnectionDelayMax: 3000 });
  socket = s;
  s.on("connect", () => {
    connectedOnce = true;
    banner(false);
  });
  s.on("disconnect", (reason) => {
    dropMedia();
    if (finished || reason === "io client disconnect") return;
    if (reason === "io server disconnect") {
      // Denied, removed and ended arrive as messages first; anything else is a plain drop.
      setTimeout(() => {
        if (!finished) endScreen("You were disconnected", "The server closed this connection (perhaps you joined from another window).");
      }, 800);
      return;
    }
    banner(true);
  });
  s.on("connect_error", (err: Error & { data?: { code?: string } }) => {
    const code = err.data?.code;
    if (code === "conflict") {
      endScreen("The session is locked", err.message || "The therapist has locked this session.", "locked");
    } else if (code) {
      endScreen("This link cannot be used", err.message || "Ask the clinic for a new link.", "refused");
    } else if (connectedOnce) {
      banner(true);
    } else if (screen === "connecting") {
      setText(app.querySelector(".card .hint")!, "Cannot reach the server yet; still trying…");
    }
  });
  s.on("state", (data: View) => {
    if (view && data.rev < view.rev) return;
    view = data;
    render();
  });
  s.on("config", (data: { ice_servers?: RTCIceServer[] }) => {
    iceServers = data.ice_servers ?? [];
  });
  s.on("signal", (data: SignalMessage) => peer?.handle(data));
  s.on("chat", (data: ChatMessage) => addChat(data));
  s.on("notice", (data: Notice) => onNotice(data));
  s.on("ended", () => endScreen("The session has ended", "Thank you for joining. You can close this window.", "ended"));
}

async function emit(event: string, data: unknown): Promise<Ack> {
  if (!socket) return { ok: false, error: { code: "invalid", message: "not connected" } };
  let ack: Ack;
  try {
    ack = (await socket.timeout(10000).emitWithAck(event, data)) as Ack;
  } catch {
    ack = { ok: false, error: { code: "timeout", message: "The server did not answer in time." } };
  }
  if (!ack?.ok) toast(ack?.error?.message ?? "That did not work.");
  return ack ?? { ok: false };
}

function banner(on: boolean): void {
  const el = ui.banner;
  if (el) el.hidden = !on;
  document.body.classList.toggle("reconnecting", on);
}

// -- media ----------------------------------------------------------------------------------

function ensureMedia(): void {
  if (peer || !socket?.connected || view?.you.status !== "admitted") return;
  peer = new RelayPeer(local, (m) => emit("signal", m), (pid, stream) => {
    streams.set(pid, stream);
    renderTiles();
  }, (text, detail) => {
    console.warn("circle media:", text, detail ?? "");
    toast(text);
  }, iceServers);
  applyLocalEnabled();
  peer.start();
}

function dropMedia(): void {
  peer?.close();
  peer = null;
  streams.clear();
  if (ui.grid) renderTiles();
}

function applyLocalEnabled(): void {
  const forced = view?.you.muted ?? { audio: false, video: false };
  local?.getAudioTracks().forEach((t) => { t.enabled = !selfMuted.audio && !forced.audio; });
  local?.getVideoTracks().forEach((t) => { t.enabled = !selfMuted.video && !forced.video; });
}

function stopLocal(): void {
  local?.getTracks().forEach((t) => t.stop());
}

// -- rendering ------------------------------------------------------------------------------

function show(name: string): void {
  if (screen === name) return;
  screen = name;
  clear(app);
  for (const k of Object.keys(ui)) delete ui[k];
  planner = null;
  document.body.dataset.screen = name;
  if (!askFirst(name)) {
    // A new screen with the plain sign-out policy starts its own idle clock.
    closeIdlePrompt();
    resetIdle();
  }
}

function render(): void {
  if (!view || finished) return;
  const { you, session } = view;
  if (session.ended) {
    endScreen("The session has ended", "Thank you for joining. You can close this window.", "ended");
  } else if (you.status === "waiting") {
    renderWaiting();
  } else if (you.status === "admitted") {
    renderSession();
    ensureMedia();
  } else if (you.status === "denied") {
    endScreen("You were not admitted", lastNotice?.kind === "denied" ? lastNotice.text : "You were not admitted.", "denied");
  } else if (you.status === "removed") {
    endScreen("You were removed from the session", lastNotice?.kind === "removed" ? lastNotice.text : "Please contact the clinic if you have questions.", "removed");
  } else if (you.status === "left") {
    endScreen("You left the session", "You can close this window.", "left");
  }
}

function renderWaiting(): void {
  if (screen !== "waiting") {
    show("waiting");
    ui.banner = h("div", { class: "banner", role: "status", hidden: true, text: "Reconnecting…" });
    ui.waited = h("p", { class: "waited", role: "timer", "aria-live": "off" });
    ui.notices = h("ul", { class: "notices", "aria-live": "polite", "aria-label": "Messages from the therapist" });
    app.append(ui.banner, h("section", { class: "card waiting", "aria-labelledby": "waiting-title" },
      h("h1", { id: "waiting-title", text: "You are in the waiting room" }),
      h("p", { class: "calm", text: "Your therapist will let you in soon. You can stay on this page; there is nothing else you need to do." }),
      ui.waited,
      h("h2", { text: "Messages from your therapist" }),
      h("p", { class: "hint no-messages", text: "No messages yet." }),
      ui.notices,
      h("button", { type: "button", class: "secondary", text: "Leave the waiting room", onclick: () => leave() }),
    ));
    banner(!!socket && !socket.connected);
  }
  tick();
}

function renderSession(): void {
  if (!view) return;
  const therapist = view.you.role === "therapist";
  if (screen !== "session") {
    show("session");
    ui.banner = h("div", { class: "banner", role: "status", hidden: true, text: "Connection lost: reconnecting…" });
    ui.title = h("h1", { class: "title" });
    ui.breakout = h("section", { class: "breakout-banner", hidden: true, "aria-label": "Your breakout room" });
    ui.grid = h("div", { class: "grid", "aria-label": "Participants' video" });
    ui.controls = h("div", { class: "controls", role: "toolbar", "aria-label": "Your controls" });
    ui.notices = h("ul", { class: "notices", "aria-live": "polite", "aria-label": "Notices" });
    ui.chatLog = h("ol", { class: "chat-log", "aria-live": "polite", "aria-label": "Chat messages" });
    const chatInput = h("input", { type: "text", maxlength: 2000, autocomplete: "off" });
    const chatForm = h("form", { class: "chat-form", onsubmit: (e: Event) => {
      e.preventDefault();
      const text = chatInput.value.trim();
      if (!text) return;
      void emit("chat", { text }).then((a) => { if (a.ok) chatInput.value = ""; });
    } }, labelled("Message to the room", chatInput), h("button", { type: "submit", class: "secondary", text: "Send" }));
    const side = h("aside", { class: "side", "aria-label": therapist ? "Therapist console" : "Messages and chat" });
    if (therapist) {
      ui.waitingList = h("ul", { class: "list" });
      const waitText = h("input", { type: "text", maxlength: 2000, autocomplete: "off" });
      ui.waitSend = h("button", { type: "submit", class: "secondary", text: "Send to waiting room" });
      ui.waitForm = h("form", { class: "row wait-message", onsubmit: (e: Event) => {
        e.preventDefault();
        const text = waitText.value.trim();
        const count = view?.waiting?.length ?? 0;
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
      planner = new Planner(emit);
      side.append(
        section("Waiting room", "waiting", ui.admitAll, ui.waitingList, ui.waitForm),
        section("Expected, not here", "expected", ui.expected),
        section("Participants", "people", ui.people),
        section("Breakouts", "breakouts", planner.el),
      );
    }
    side.append(section("Notices", "notices", ui.notices), section("Chat", "chat", ui.chatLog, chatForm));
    app.append(ui.banner, h("header", { class: "topbar" }, ui.title,
      h("span", { class: "who", text: `${view.you.name ?? ""}${therapist ? " · therapist" : ""}` })),
      ui.breakout,
      h("div", { class: "layout" }, h("section", { class: "stage", "aria-label": "Session" }, ui.grid, ui.controls), side));
    buildControls(therapist);
    banner(!!socket && !socket.connected);
  }
  setText(ui.title, view.session.title || "Session");
  renderControls();
  renderTiles();
  renderBreakoutBanner();
  if (therapist) renderConsole();
}

function section(title: string, key: string, ...body: HTMLElement[]): HTMLElement {
  return h("details", { class: `panel panel-${key}`, open: true }, h("summary", { text: title }), ...body);
}

function buildControls(therapist: boolean): void {
  const c = ui.controls;
  ui.mic = h("button", { type: "button", class: "control", onclick: () => {
    selfMuted.audio = !selfMuted.audio; applyLocalEnabled(); renderControls(); renderTiles();
  } });
  ui.cam = h("button", { type: "button", class: "control", onclick: () => {
    selfMuted.video = !selfMuted.video; applyLocalEnabled(); renderControls(); renderTiles();
  } });
  ui.hand = h("button", { type: "button", class: "control", onclick: () => emit("hand", { raised: !view?.you.hand }) });
  ui.help = h("button", { type: "button", class: "control", text: "Ask for help", hidden: true,
    onclick: () => emit("breakout_help", {}).then((a) => { if (a.ok) toast("Your therapist has been asked to help.", "info"); }) });
  c.append(ui.mic, ui.cam, ui.hand, ui.help);
  if (therapist) {
    ui.lock = h("button", { type: "button", class: "control", onclick: () => emit("lock", { locked: !view?.session.locked }) });
    ui.end = twoStep("End session", "Confirm: end for everyone", "danger", () => emit("end", {}));
    c.append(ui.lock, ui.end);
  }
  c.append(h("button", { type: "button", class: "control danger", text: "Leave", onclick: () => leave() }));
}

function renderControls(): void {
  if (!view) return;
  const forced = view.you.muted ?? { audio: false, video: false };
  const hasAudio = !!local?.getAudioTracks().length;
  const hasVideo = !!local?.getVideoTracks().length;
  const micOff = selfMuted.audio || forced.audio;
  const camOff = selfMuted.video || forced.video;
  setText(ui.mic, !hasAudio ? "No microphone" : forced.audio ? "Mic muted by therapist" : micOff ? "Unmute microphone" : "Mute microphone");
  ui.mic.setAttribute("aria-pressed", String(micOff));
  (ui.mic as HTMLButtonElement).disabled = !hasAudio || forced.audio;
  setText(ui.cam, !hasVideo ? "Audio only" : forced.video ? "Camera off by therapist" : camOff ? "Turn camera on" : "Turn camera off");
  ui.cam.setAttribute("aria-pressed", String(camOff));
  (ui.cam as HTMLButtonElement).disabled = !hasVideo || forced.video;
  setText(ui.hand, view.you.hand ? "Lower hand" : "Raise hand");
  ui.hand.setAttribute("aria-pressed", String(!!view.you.hand));
  const inBreakout = !!view.breakouts?.open && !!view.you.room && view.you.room !== "main";
  ui.help.hidden = !(inBreakout && view.you.role === "client");
  if (ui.lock) {
    setText(ui.lock, view.session.locked ? "Unlock session" : "Lock session");
    ui.lock.setAttribute("aria-pressed", String(view.session.locked));
  }
}

type TileItem = { id: string; name: string; self: boolean; muted: { audio: boolean; video: boolean }; hand: boolean; role: string; breakoutRole: string | null };

function renderTiles(): void {
  if (!view || !ui.grid) return;
  const room = view.you.room;
  const forced = view.you.muted ?? { audio: false, video: false };
  const items: TileItem[] = [{
    id: view.you.id, name: `${view.you.name?.split(" ")[0] ?? "You"} (you)`, self: true,
    muted: { audio: selfMuted.audio || forced.audio || !local?.getAudioTracks().length,
      video: selfMuted.video || forced.video || !local?.getVideoTracks().length },
    hand: !!view.you.hand, role: view.you.role ?? "client", breakoutRole: view.you.breakout_role,
  }];
  for (const p of view.participants) {
    if (p.id === view.you.id || p.room !== room || p.status !== "admitted") continue;
    items.push({ id: p.id, name: p.name, self: false, muted: p.muted, hand: p.hand, role: p.role,
      breakoutRole: p.breakout_role ?? null });
  }
  syncList(ui.grid, items, (t) => t.id, createTile, updateTile);
  ui.grid.dataset.count = String(items.length);
}

function createTile(t: TileItem): HTMLElement {
  const video = h("video", { autoplay: true, playsInline: true, muted: t.self });
  const initials = h("div", { class: "initials", "aria-hidden": "true" });
  return h("figure", { class: `tile${t.self ? " self" : ""}`, "data-pid": t.id },
    video, initials,
    h("figcaption", {}, h("span", { class: "name" }), h("span", { class: "badges" })));
}

function updateTile(el: HTMLElement, t: TileItem): void {
  const video = el.querySelector("video")!;
  const stream = t.self ? (local && local.getVideoTracks().length ? local : null) : streams.get(t.id) ?? null;
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

function renderBreakoutBanner(): void {
  if (!view) return;
  const b = view.breakouts;
  const roomId = view.you.room;
  const room = b?.open ? b.rooms.find((r) => r.id === roomId) : undefined;
  const el = ui.breakout;
  el.hidden = !room;
  if (!room || !b) return;
  const key = JSON.stringify([room, view.you.breakout_role, view.you.role]);
  if (el.dataset.key !== key) {
    el.dataset.key = key;
    clear(el);
    const role = view.you.breakout_role;
    append(el, 
      h("h2", {}, view.you.role === "therapist" ? "Visiting: " : "Breakout room: ", h("span", { class: "room-name", text: room.name })),
      role ? h("p", { class: "role" }, "Your role: ", h("strong", { class: "role-name", text: cap(role) })) : null,
      room.scenario ? h("p", { class: "scenario" }, "Scenario: ", h("span", { class: "scenario-text", text: room.scenario })) : null,
      role === "observer" ? h("p", { class: "observer", text: "You are observing: listen-only. Others in the room do not hear or see you; you will share feedback afterwards." }) : null,
      h("p", { class: "countdown", role: "timer", "aria-live": "off" }),
    );
  }
  setText(el.querySelector(".countdown")!, countdownText(b.ends_at, b.closing_at ?? null));
}

function renderConsole(): void {
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
  const others = view.participants.filter((p) => p.id !== view!.you.id);
  syncList(ui.people, others, (p) => p.id, createPersonRow, updatePersonRow);
  planner?.update(view);
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
  setText(el.querySelector(".since")!, Number.isNaN(since) ? "" : `waiting ${duration(Date.now() - since)}`);
}

function createPersonRow(p: PeerView): HTMLElement {
  const row = h("li", { class: "person-row" }, h("span", { class: "name" }), h("span", { class: "state hint" }),
    h("span", { class: "row actions" }));
  row.dataset.built = "";
  return row;
}

function updatePersonRow(el: HTMLElement, p: PeerView): void {
  if (!view) return;
  const roomName = p.room && p.room !== "main" ? view.breakouts?.rooms.find((r) => r.id === p.room)?.name ?? p.room : "main room";
  setText(el.querySelector(".name")!, p.name);
  const facts = [p.role === "therapist" ? "therapist" : "", p.hand ? "hand raised" : "", p.muted.audio ? "mic muted" : "",
    p.muted.video ? "camera off" : "", p.connected === false ? "reconnecting" : "", view.breakouts?.open ? `in ${roomName}` : ""].filter(Boolean);
  setText(el.querySelector(".state")!, facts.join(" · "));
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

function twoStep(label: string, confirm: string, cls: string, action: () => unknown, aria?: string): HTMLButtonElement {
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

// -- messages -------------------------------------------------------------------------------

function onNotice(n: Notice): void {
  lastNotice = n;
  if (n.kind === "denied") {
    endScreen("You were not admitted", n.text || "You were not admitted.", "denied");
    return;
  }
  if (n.kind === "removed") {
    endScreen("You were removed from the session", n.text || "", "removed");
    return;
  }
  let text = n.text || "";
  if (n.kind === "message") {
    // The therapist's word to the waiting room: plain text, clearly from the therapist.
    app.querySelector(".no-messages")?.remove();
    ui.notices?.prepend(h("li", { class: "notice n-message" },
      h("span", { class: "from", text: "From your therapist" }),
      h("span", { class: "time hint", text: ` · ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` }),
      h("p", { class: "text", text })));
    return;
  }
  if (n.kind === "help") {
    const who = view?.participants.find((p) => p.id === n.participant_id)?.name ?? "A client";
    const room = view?.breakouts?.rooms.find((r) => r.id === n.room)?.name ?? n.room ?? "";
    text = text || `${who} asks for help in ${room}.`;
  }
  const item = h("li", { class: `notice n-${n.kind.replace(/[^a-z_]/g, "")}` },
    h("span", { class: "time hint", text: new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + " " }),
    h("span", { class: "text", text }));
  if (n.kind === "help" && n.room) {
    const roomId = n.room;
    item.append(h("button", { type: "button", class: "secondary", text: "Visit", "aria-label": `Visit ${text}`,
      onclick: () => emit("breakout_visit", { room: roomId }) }));
  }
  ui.notices?.prepend(item);
  if (["breakout_warning", "broadcast", "breakouts_closing", "help"].includes(n.kind)) toast(text, "info");
}

function addChat(m: ChatMessage): void {
  if (!ui.chatLog) return;
  const mine = m.from === view?.you.id;
  ui.chatLog.append(h("li", { class: mine ? "mine" : "" },
    h("span", { class: "from", text: mine ? "You" : m.name }), ": ",
    h("span", { class: "text", text: m.text })));
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

function toast(text: string, kind: "error" | "info" = "error"): void {
  let holder = document.getElementById("toasts");
  if (!holder) {
    holder = h("div", { id: "toasts", role: "alert", "aria-live": "assertive" });
    document.body.append(holder);
  }
  const item = h("div", { class: `toast ${kind}`, text });
  holder.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 6000 : 8000);
}

// -- leaving and end screens ---------------------------------------------------------------

async function leave(): Promise<void> {
  if (socket?.connected) await emit("leave", {});
  endScreen("You left the session", "You can close this window.", "left");
}

function endScreen(title: string, text: string, kind = "error"): void {
  if (finished && screen === `end-${kind}`) {
    setText(app.querySelector(".end-text")!, text);
    return;
  }
  finished = true;
  socket?.disconnect();
  dropMedia();
  stopLocal();
  meterStop?.();
  sessionStorage.removeItem("circle.token");
  show(`end-${kind}`);
  app.append(h("section", { class: `card end end-${kind}`, "aria-labelledby": "end-title" },
    h("h1", { id: "end-title", text: title }),
    h("p", { class: "end-text", text })));
  app.querySelector("h1")?.setAttribute("tabindex", "-1");
  (app.querySelector("h1") as HTMLElement | null)?.focus();
}

// -- timers ---------------------------------------------------------------------------------

function tick(): void {
  checkIdle();
  if (screen === "waiting" && ui.waited) setText(ui.waited, `You have waited ${duration(Date.now() - waitingSince)}`);
  if (screen === "session" && view) {
    ui.waitingList?.querySelectorAll<HTMLElement>(".waiting-row").forEach(setWaitTime);
    const b = view.breakouts;
    const cd = ui.breakout?.querySelector(".countdown");
    if (cd && b?.open) setText(cd, countdownText(b.ends_at, b.closing_at ?? null));
    planner?.tick();
  }
}

// -- automatic logoff (idle.ts) -----------------------------------------------------------

/** Screens where someone may just be watching and listening: ask before leaving. */
function askFirst(name: string): boolean {
  return name === "waiting" || name === "session";
}

function checkIdle(): void {
  if (signingOut) return;
  const cfg = idleConfig();
  if (askFirst(screen)) {
    if (!idlePrompt && idleFor() >= cfg.promptMs) openIdlePrompt(cfg.graceMs);
    if (idlePrompt) {
      const left = idlePrompt.deadline - Date.now();
      if (left <= 0) void signOut();
      else setText(idlePrompt.count, `You will leave in ${duration(left + 999)}.`);
    }
  } else if ((screen === "device" || screen.startsWith("end-")) && screen !== "end-signed-out") {
    if (idleFor() >= cfg.signOutMs) void signOut();
  }
}

function openIdlePrompt(graceMs: number): void {
  pauseActivity(true);
  const count = h("p", { class: "idle-count", role: "timer", "aria-live": "off" });
  const stay = h("button", { type: "button", class: "primary big", text: "I'm still here",
    onclick: () => closeIdlePrompt() });
  const inSession = screen === "session";
  const dialog = h("dialog", { class: "idle-prompt", role: "alertdialog", "aria-modal": "true",
    "aria-labelledby": "idle-title", "aria-describedby": "idle-text" },
    h("h2", { id: "idle-title", text: "Are you still there?" }),
    h("p", { id: "idle-text", text: `There has been no keyboard, mouse or touch activity here for a while. For your privacy you will leave the ${inSession ? "session" : "waiting room"} unless you answer.` }),
    count, stay);
  // Escape is an answer too: somebody is at the keyboard.
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); closeIdlePrompt(); });
  document.body.append(dialog);
  idlePrompt = { dialog, count, deadline: Date.now() + graceMs };
  setText(count, `You will leave in ${duration(graceMs + 999)}.`);
  dialog.showModal();
  stay.focus();
  document.title = "Are you still there? · Circle";
  chime();
}

function closeIdlePrompt(): void {
  pauseActivity(false);
  resetIdle();
  if (!idlePrompt) return;
  const { dialog } = idlePrompt;
  idlePrompt = null;
  if (dialog.open) dialog.close();
  dialog.remove();
  document.title = "Circle";
}

/** A short soft tone, for someone who is listening rather than watching. */
function chime(): void {
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 660;
    gain.gain.setValueAtTime(0.0001, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.15, ctx.currentTime + 0.05);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.6);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.65);
    osc.onended = () => { void ctx.close().catch(() => undefined); };
  } catch {
    /* no audio output: the dialog is enough */
  }
}

async function signOut(): Promise<void> {
  if (signingOut) return;
  signingOut = true;
  try {
    closeIdlePrompt();
    if (askFirst(screen) && socket?.connected && !finished) {
      await Promise.race([emit("leave", {}), new Promise((r) => setTimeout(r, 3000))]);
    }
    sessionStorage.removeItem("circle.token");
    token = "";
    endScreen("You were signed out",
      "For your privacy, this page signs you out after a time without activity. To join again, open the link from your invitation.",
      "signed-out");
  } finally {
    signingOut = false;
  }
}

// Hooks for the browser tests (nothing here that the page does not show already).
(window as unknown as Record<string, unknown>).circleDebug = {
  inbound: async () => (peer ? await peer.inbound() : {}),
  drop: () => socket?.io.engine?.close(),
  state: () => view,
  connected: () => !!socket?.connected,
  iceState: () => peer?.pc.iceConnectionState ?? null,
  pc: () => peer && {
    ice: peer.pc.iceConnectionState, connection: peer.pc.connectionState, signaling: peer.pc.signalingState,
    local: peer.pc.localDescription?.sdp ?? null, remote: peer.pc.remoteDescription?.sdp ?? null,
    streams: [...streams.keys()],
  },
};
