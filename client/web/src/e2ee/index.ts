// End-to-end encrypted media (issue 16), the page's side. The page makes an ECDH key pair
// once per load (before connecting: its public key is the connect auth's `e2ee_key`), seals
// its media key for each member of its room (keyManager.ts) and has one worker (worker.ts)
// encrypt every own frame and decrypt every incoming one (RTCRtpScriptTransform). The relay
// forwards frames it cannot read. All of it is inert in sessions whose view says
// `session.e2ee` false (or nothing).

import { setText } from "../dom";
import { state, ui } from "../state";
import type { View } from "../types";
import { b64url } from "./frameCrypto";
import { type Envelope, type IncomingKey, KeyManager, type WorkerMessage } from "./keyManager";
import { type Identity, makeIdentity } from "./keys";

/** Encoded transforms exist in this browser (else no `e2ee_key`: the server refuses it an
 * encrypted session, with a message the refusal screen shows). */
export const supported = typeof window !== "undefined" && "RTCRtpScriptTransform" in window;

let identity: Identity | null = null;
let manager: KeyManager | null = null;
let worker: Worker | null = null;
type Received = Record<string, { handle: string; epochs: number[]; fingerprints: string[] }>;
let stats: { counts: { encrypted: number; decrypted: number; dropped: number }; received: Received } = {
  counts: { encrypted: 0, decrypted: 0, dropped: 0 }, received: {},
};

/** The key pair, made once per page load (null: no encoded transforms, or it failed). */
export const ready: Promise<Identity | null> = supported
  ? makeIdentity().then((me) => {
    identity = me;
    manager = new KeyManager(me, { post, send, changed: renderE2eeStatus });
    return me;
  }).catch((err) => {
    console.warn("circle e2ee: no key pair:", String(err));
    return null;
  })
  : Promise.resolve(null);

/** This page's public key for the connect auth (`e2ee_key`), once made. */
export function publicKey(): string | null {
  return identity?.text ?? null;
}

/** The view says this session is end-to-end encrypted and this page can take part. */
export function e2eeOn(view: View | null = state.view): boolean {
  return !!view?.session.e2ee && !!manager;
}

function theWorker(): Worker {
  if (!worker) {
    worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    worker.onmessage = (event: MessageEvent) => {
      const data = event.data as { type?: string } & typeof stats;
      if (data?.type === "stats") stats = { counts: data.counts, received: data.received };
    };
  }
  return worker;
}

function post(message: WorkerMessage): void {
  theWorker().postMessage(message);
}

/** `e2ee_keys` on the current socket (no toast: a failure here is the key policy's). */
async function send(keys: Envelope[]): Promise<boolean> {
  const socket = state.socket;
  if (!socket?.connected || keys.length === 0) return keys.length === 0;
  try {
    const ack = (await socket.timeout(10000).emitWithAck("e2ee_keys", { keys })) as { ok?: boolean; error?: { message?: string } };
    if (!ack?.ok) console.warn("circle e2ee: keys refused:", ack?.error?.message ?? "");
    return !!ack?.ok;
  } catch {
    console.warn("circle e2ee: keys not acknowledged in time");
    return false;
  }
}

/** Every `state` view (before it is rendered). */
export function e2eeView(view: View): void {
  if (!view.session.e2ee || !manager) return;
  theWorker();
  manager.onView(view);
}

/** A server `e2ee_key` event. */
export function e2eeKey(data: IncomingKey): void {
  manager?.onKey(data);
}

/** Own video prefers VP8 (an H.264 frame cannot be encrypted this way), and every own
 * sender and every receiver gets the worker's transform. Undefined outside e2ee sessions. */
export interface MediaHooks {
  sender(transceiver: RTCRtpTransceiver): void;
  receiver(receiver: RTCRtpReceiver): void;
}

const transformed = new WeakSet<RTCRtpSender | RTCRtpReceiver>();

export function mediaHooks(): MediaHooks | undefined {
  if (!e2eeOn()) return undefined;
  return {
    sender(transceiver) {
      const kind = transceiver.receiver.track?.kind;
      if (kind === "video") preferVp8(transceiver);
      const sender = transceiver.sender;
      if (transformed.has(sender)) return;
      transformed.add(sender);
      sender.transform = new RTCRtpScriptTransform(theWorker(), { role: "sender", kind });
    },
    receiver(receiver) {
      if (transformed.has(receiver)) return;
      transformed.add(receiver);
      receiver.transform = new RTCRtpScriptTransform(theWorker(), { role: "receiver", kind: receiver.track.kind });
    },
  };
}

function preferVp8(transceiver: RTCRtpTransceiver): void {
  try {
    const codecs = RTCRtpSender.getCapabilities("video")?.codecs ?? [];
    const vp8 = codecs.filter((c) => /^video\/vp8$/i.test(c.mimeType));
    const rtx = codecs.filter((c) => /^video\/rtx$/i.test(c.mimeType));
    if (vp8.length) transceiver.setCodecPreferences([...vp8, ...rtx]);
  } catch (err) {
    console.warn("circle e2ee: cannot prefer VP8:", String(err));
  }
}

/** The session screen's status line (`#e2ee-status`). */
export function renderE2eeStatus(): void {
  const el = ui.e2ee;
  if (!el) return;
  const on = e2eeOn();
  const code = on ? manager?.code ?? "" : "";
  setText(el, on ? `End-to-end encrypted${code ? ` · safety code ${code}` : ""}` : "Not end-to-end encrypted");
  el.title = on
    ? "Compare this code aloud with everyone in your room. If everyone's matches, the server cannot see or hear the session."
    : "The server relays this session's audio and video and could see and hear it.";
  el.classList.toggle("on", on);
}

/** For the tests' debug hook: fingerprints (a hash of a key), never a key. */
export function e2eeDebug(): Record<string, unknown> {
  const received: Record<string, { kid: string; epochs: number[]; fingerprints: string[] }> = {};
  for (const [kid, r] of Object.entries(stats.received)) {
    if (!r.fingerprints.length) continue;
    // A handle's newest kid wins (a reloaded page has a new one): listed last by the worker.
    received[r.handle] = { kid, epochs: r.epochs, fingerprints: r.fingerprints };
  }
  return {
    on: e2eeOn(),
    kid: manager ? b64url(manager.kid) : null,
    epoch: manager?.sendEpoch ?? null,
    sendFingerprint: manager?.sendFingerprint ?? null,
    safetyCode: manager?.code ?? "",
    received,
    counts: { ...stats.counts },
  };
}
