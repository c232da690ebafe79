// Who gets this page's media key, and when it changes (issue 16), driven by every `state`
// view. Members: admitted participants with a key in my room, me excluded.
//  - not admitted, or no room: forget the sending key;
//  - my room changed, or a member is gone: new random material, epoch + 1, sealed for every
//    member (one `e2ee_keys`), used once the server acknowledged it;
//  - only additions: ratchet the material, epoch + 1, sealed for the new members only, used
//    at once (the others ratchet by themselves from the frame's epoch byte).
// Keys from others (`e2ee_key`) are taken only from the public key the view names for the
// sender's handle, and handed to the worker.

import { type Bytes, b64url, fingerprint, fromB64url, randomBytes, ratchet } from "./frameCrypto";
import { type Identity, safetyCode, unwrap, wrap } from "./keys";
import type { PeerView, View } from "../types";

export type Envelope = { to: string; epoch: number; kid: string; wrapped: string };
export type WorkerMessage =
  | { type: "send"; kid: Bytes | null; epoch: number; material: Bytes | null }
  | { type: "recv"; handle: string; kid: Bytes; epoch: number; material: Bytes };

export interface KeyDeps {
  /** To the transform worker. */
  post(message: WorkerMessage): void;
  /** `e2ee_keys` (at most 64 entries); resolves when the server acknowledged it (true: ok). */
  send(keys: Envelope[]): Promise<boolean>;
  /** The safety code or the sending key changed. */
  changed(): void;
}

export interface IncomingKey { from?: unknown; handle?: unknown; key?: unknown; epoch?: unknown; kid?: unknown; wrapped?: unknown }

const MAX_PENDING = 32;
const MAX_PER_EVENT = 64;
/** Views a key whose sender the view does not name yet waits for. */
const MAX_TRIES = 5;

export class KeyManager {
  /** 4 random bytes per page load. */
  readonly kid = randomBytes(4);
  private epoch = 0;
  /** The newest material (used now, or once its envelopes are acknowledged). */
  private material: Bytes | null = null;
  /** What the worker encrypts with now (for the debug hook). */
  sendEpoch: number | null = null;
  sendFingerprint: string | null = null;
  code = "";
  private room: string | null = null;
  /** Members the current material went to: handle -> public key. */
  private members = new Map<string, string>();
  /** Members seen disconnected: when back, they get the current material again (a key
   * sent while they were away may never have reached them). */
  private away = new Set<string>();
  private generation = 0;
  private switches = 0;
  private pending: { data: IncomingKey; tries: number }[] = [];
  private chain: Promise<void> = Promise.resolve();
  private view: View | null = null;

  constructor(private readonly me: Identity, private readonly deps: KeyDeps) {}

  onView(view: View): void {
    this.enqueue(() => this.apply(view));
  }

  onKey(data: IncomingKey): void {
    this.enqueue(async () => { await this.accept(data, true); });
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch((err) => console.warn("circle e2ee:", String(err)));
  }

  private async apply(view: View): Promise<void> {
    this.view = view;
    if (!view.session.e2ee) return;
    const you = view.you;
    const code = await this.safety(view);
    if (code !== this.code) {
      this.code = code;
      this.deps.changed();
    }
    if (you.status !== "admitted" || you.room === null) {
      if (this.material || this.sendFingerprint) {
        this.material = null;
        this.room = null;
        this.members.clear();
        this.away.clear();
        this.generation++;
        this.switchTo(null, 0);
      }
    } else {
      await this.rekey(view, you.room);
    }
    // Keys that arrived before the view named their sender.
    const waiting = this.pending;
    this.pending = [];
    for (const item of waiting) {
      if (!(await this.accept(item.data, false)) && item.tries < MAX_TRIES) this.keep(item.data, item.tries + 1);
    }
  }

  private currentMembers(view: View, room: string): Map<string, PeerView> {
    const out = new Map<string, PeerView>();
    for (const p of view.participants) {
      if (p.status !== "admitted" || !p.key || p.room !== room) continue;
      if (p.handle === view.you.handle || p.key === this.me.text) continue;
      out.set(p.handle, p);
    }
    return out;
  }

  private async rekey(view: View, room: string): Promise<void> {
    const now = this.currentMembers(view, room);
    const gone = [...this.members].some(([handle, key]) => now.get(handle)?.key !== key);
    const added = [...now.values()].filter((p) => !this.members.has(p.handle));
    const back = [...now.values()].filter((p) => this.away.has(p.handle) && p.connected !== false
      && this.members.get(p.handle) === p.key);
    for (const p of now.values()) if (p.connected === false) this.away.add(p.handle);
    for (const p of back) this.away.delete(p.handle);
    for (const h of [...this.away]) if (!now.has(h)) this.away.delete(h);

    if (!this.material || this.room !== room || gone) {
      // Fresh material: no one who left can follow it.
      const material = randomBytes(32);
      this.material = material;
      this.epoch = (this.epoch + 1) % 256;
      this.room = room;
      this.members = new Map([...now.values()].map((p) => [p.handle, p.key!]));
      const generation = ++this.generation;
      const epoch = this.epoch;
      const sent = await this.deliver(view, [...now.values()], epoch, material);
      void sent.acked.then(() => {
        if (this.generation === generation) this.switchTo(material, epoch);
      });
      return;
    }
    if (added.length) {
      const material = await ratchet(this.material);
      this.material = material;
      this.epoch = (this.epoch + 1) % 256;
      for (const p of added) this.members.set(p.handle, p.key!);
      const generation = ++this.generation;
      await this.deliver(view, added, this.epoch, material);
      if (this.generation === generation) this.switchTo(material, this.epoch);
    }
    if (back.length && this.material) await this.deliver(view, back, this.epoch, this.material);
  }

  /** Seal `material` for `peers` and send it; resolves once sent, `acked` once acknowledged. */
  private async deliver(view: View, peers: PeerView[], epoch: number, material: Bytes): Promise<{ acked: Promise<void> }> {
    const kid = b64url(this.kid);
    const keys: Envelope[] = [];
    for (const p of peers) {
      const pub = fromB64url(p.key ?? "");
      if (!pub || pub.length !== 65) continue;
      try {
        keys.push({ to: p.handle, epoch, kid, wrapped: await wrap(this.me, view.session.id, pub, epoch, this.kid, material) });
      } catch (err) {
        console.warn("circle e2ee: cannot seal a key for", p.handle, String(err));
      }
    }
    const acks: Promise<void>[] = [];
    for (let i = 0; i < keys.length; i += MAX_PER_EVENT) {
      const batch = keys.slice(i, i + MAX_PER_EVENT);
      // Not delivered (a drop, a refusal): those members get the current key on a later view.
      acks.push(this.deps.send(batch).then((ok) => {
        if (!ok) for (const k of batch) this.away.add(k.to);
      }));
    }
    return { acked: Promise.all(acks).then(() => undefined) };
  }

  private switchTo(material: Bytes | null, epoch: number): void {
    this.deps.post({ type: "send", kid: material ? this.kid : null, epoch, material });
    this.sendEpoch = material ? epoch : null;
    const switched = ++this.switches;
    if (!material) {
      this.sendFingerprint = null;
      this.deps.changed();
      return;
    }
    void fingerprint(material).then((fp) => {
      if (this.switches === switched) this.sendFingerprint = fp;
      this.deps.changed();
    });
  }

  /** False: the view does not name the sender (yet). */
  private async accept(data: IncomingKey, fresh: boolean): Promise<boolean> {
    const view = this.view;
    if (!view?.session.e2ee) {
      if (!view && fresh) this.keep(data, 0);
      return true;
    }
    const { handle, key, epoch, kid, wrapped } = data;
    if (typeof handle !== "string" || typeof key !== "string" || typeof wrapped !== "string"
      || typeof kid !== "string" || typeof epoch !== "number" || !Number.isInteger(epoch) || epoch < 0 || epoch > 255) return true;
    const sender = view.participants.find((p) => p.handle === handle);
    if (!sender) {
      if (fresh) this.keep(data, 0);
      return false;
    }
    if (sender.key !== key) return true; // not the key the server's view names for this person
    const pub = fromB64url(key);
    const kidBytes = fromB64url(kid);
    if (!pub || pub.length !== 65 || !kidBytes || kidBytes.length !== 4) return true;
    const material = await unwrap(this.me, view.session.id, pub, epoch, kidBytes, wrapped);
    if (!material) {
      console.warn("circle e2ee: a key from", handle, "did not open");
      return true;
    }
    this.deps.post({ type: "recv", handle, kid: kidBytes, epoch, material });
    return true;
  }

  private keep(data: IncomingKey, tries: number): void {
    this.pending.push({ data, tries });
    if (this.pending.length > MAX_PENDING) this.pending.shift();
  }

  /** Over the admitted members of my room that have a key, me included. */
  private async safety(view: View): Promise<string> {
    const room = view.you.room;
    if (view.you.status !== "admitted" || room === null) return "";
    const keys: Bytes[] = [];
    const seen = new Set<string>();
    const add = (text: string | null | undefined) => {
      if (!text || seen.has(text)) return;
      const raw = fromB64url(text);
      if (raw) {
        seen.add(text);
        keys.push(raw);
      }
    };
    add(view.you.key ?? this.me.text);
    for (const p of view.participants) if (p.status === "admitted" && p.room === room) add(p.key);
    return safetyCode(keys);
  }
}
