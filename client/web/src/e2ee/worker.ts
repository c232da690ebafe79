// The page's one encoded-transform worker (issue 16): every own sender's frames are
// encrypted here with the page's current key, every receiver's frames decrypted with the
// key of the frame's kid and epoch. A frame without a key that opens it is dropped.
// Messages from the page (index.ts): {type: "send", kid, epoch, material} (material null:
// no key yet, drop what would be sent) and {type: "recv", handle, kid, epoch, material}.
// Back to the page every second: {type: "stats", counts, received}.

import {
  type Bytes, type FrameKind, b64url, decryptFrame, encryptFrame, fingerprint, frameKey, frameTrailer, ratchet,
} from "./frameCrypto";

// The DOM lib is what this project type-checks with: the worker scope's few names, by hand.
interface EncodedFrame { data: ArrayBuffer; type?: string }
interface Transformer {
  readable: ReadableStream<EncodedFrame>;
  writable: WritableStream<EncodedFrame>;
  options?: { role?: string; kind?: string };
  sendKeyFrameRequest?: () => Promise<void>;
  generateKeyFrame?: (rid?: string) => Promise<unknown>;
}
interface WorkerScope {
  onrtctransform: ((event: { transformer: Transformer }) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
  RTCEncodedVideoFrame?: { new(): unknown };
}
const scope = self as unknown as WorkerScope;

const KEEP_EPOCHS = 4;
const MAX_AHEAD = 8;

type Sending = { kid: Bytes; epoch: number; key: CryptoKey } | null;
let sending: Sending = null;

interface KidKeys {
  handle: string;
  latestEpoch: number;
  latestMaterial: Bytes;
  keys: Map<number, { key: CryptoKey; fp: string }>;
}
const store = new Map<string, KidKeys>();
const counts = { encrypted: 0, decrypted: 0, dropped: 0 };
const senders = new Set<Transformer>();
const receivers = new Set<Transformer>();

function remember(entry: KidKeys, epoch: number, key: CryptoKey, fp: string): void {
  entry.keys.delete(epoch);
  entry.keys.set(epoch, { key, fp });
  while (entry.keys.size > KEEP_EPOCHS) entry.keys.delete(entry.keys.keys().next().value as number);
}

function kindOf(frame: EncodedFrame): FrameKind {
  const Video = scope.RTCEncodedVideoFrame;
  const video = Video ? frame instanceof Video : typeof frame.type === "string";
  if (!video) return "audio";
  return frame.type === "key" ? "video-key" : "video";
}

async function encrypt(frame: EncodedFrame, out: TransformStreamDefaultController<EncodedFrame>): Promise<void> {
  const now = sending;
  if (!now) {
    counts.dropped++;
    return;
  }
  try {
    frame.data = await encryptFrame(now.key, now.kid, now.epoch, kindOf(frame), frame.data);
    counts.encrypted++;
    out.enqueue(frame);
  } catch {
    counts.dropped++;
  }
}

/** The key of `epoch` for `entry`: stored, or ratcheted from the latest material when a
 * little ahead (kept only if it opens the frame: `opened`). */
async function decrypt(frame: EncodedFrame, out: TransformStreamDefaultController<EncodedFrame>): Promise<void> {
  const trailer = frameTrailer(frame.data);
  const entry = trailer && store.get(b64url(trailer.kid));
  if (!trailer || !entry) {
    counts.dropped++;
    return;
  }
  const kind = kindOf(frame);
  try {
    const known = entry.keys.get(trailer.epoch);
    if (known) {
      const plain = await decryptFrame(known.key, kind, frame.data);
      if (plain) {
        frame.data = plain;
        counts.decrypted++;
        out.enqueue(frame);
        return;
      }
    }
    const ahead = (trailer.epoch - entry.latestEpoch + 256) % 256;
    if (!known && ahead >= 1 && ahead <= MAX_AHEAD) {
      let material = entry.latestMaterial;
      for (let i = 0; i < ahead; i++) material = await ratchet(material);
      const key = await frameKey(material);
      const plain = await decryptFrame(key, kind, frame.data);
      if (plain) {
        if (store.get(b64url(trailer.kid)) === entry && entry.keys.get(trailer.epoch) === undefined) {
          entry.latestEpoch = trailer.epoch;
          entry.latestMaterial = material;
          remember(entry, trailer.epoch, key, await fingerprint(material));
        }
        frame.data = plain;
        counts.decrypted++;
        out.enqueue(frame);
        return;
      }
    }
  } catch {
    /* dropped below */
  }
  counts.dropped++;
}

function pipe(transformer: Transformer, role: "sender" | "receiver"): void {
  const set = role === "sender" ? senders : receivers;
  set.add(transformer);
  const step = role === "sender" ? encrypt : decrypt;
  transformer.readable
    .pipeThrough(new TransformStream<EncodedFrame, EncodedFrame>({ transform: (frame, out) => step(frame, out) }))
    .pipeTo(transformer.writable)
    .catch(() => undefined)
    .finally(() => set.delete(transformer));
}

scope.onrtctransform = (event) => {
  const transformer = event.transformer;
  pipe(transformer, transformer.options?.role === "sender" ? "sender" : "receiver");
};

function keyFrames(set: Set<Transformer>, ask: (t: Transformer) => Promise<unknown> | undefined): void {
  for (const t of set) {
    try {
      ask(t)?.catch(() => undefined);
    } catch {
      /* audio, or not supported */
    }
  }
}

let messages: Promise<void> = Promise.resolve();
scope.onmessage = (event: MessageEvent) => {
  const data = event.data as { type?: string; handle?: string; kid?: Bytes | null; epoch?: number; material?: Bytes | null };
  messages = messages.then(async () => {
    try {
      if (data.type === "send") {
        if (!data.kid || !data.material) {
          sending = null;
          return;
        }
        sending = { kid: data.kid, epoch: (data.epoch ?? 0) & 0xff, key: await frameKey(data.material) };
        keyFrames(senders, (t) => t.generateKeyFrame?.());
      } else if (data.type === "recv" && data.kid && data.material) {
        const id = b64url(data.kid);
        const epoch = (data.epoch ?? 0) & 0xff;
        let entry = store.get(id);
        if (!entry || entry.handle !== (data.handle ?? "")) {
          entry = { handle: data.handle ?? "", latestEpoch: epoch, latestMaterial: data.material, keys: new Map() };
          store.set(id, entry);
        }
        entry.latestEpoch = epoch;
        entry.latestMaterial = data.material;
        remember(entry, epoch, await frameKey(data.material), await fingerprint(data.material));
        keyFrames(receivers, (t) => t.sendKeyFrameRequest?.());
      }
    } catch {
      /* a bad message changes nothing */
    }
  });
};

setInterval(() => {
  const received: Record<string, { handle: string; epochs: number[]; fingerprints: string[] }> = {};
  for (const [kid, entry] of store) {
    received[kid] = {
      handle: entry.handle,
      epochs: [...entry.keys.keys()],
      fingerprints: [...entry.keys.values()].map((k) => k.fp),
    };
  }
  scope.postMessage({ type: "stats", counts: { ...counts }, received });
}, 1000);
