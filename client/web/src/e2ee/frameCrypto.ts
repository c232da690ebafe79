// End-to-end encrypted media (issue 16): the byte-exact primitives shared by the page
// (keys.ts, keyManager.ts) and the transform worker (worker.ts). docs: "circle-e2ee v1".
//
//   frame key   = HKDF-SHA256(material, salt "", info "circle-e2ee v1 frame") -> AES-256-GCM
//   ratchet     = HKDF-SHA256(material, salt "", info "circle-e2ee v1 ratchet"), 32 bytes
//   frame       = clear || AES-GCM(key, iv, data[clear:], aad = clear) || iv(12) || kid(4) || epoch(1)
//   clear       = 10 bytes (video keyframe), 3 (other video), 1 (audio); fewer if shorter.

export type Bytes = Uint8Array<ArrayBuffer>;

export const TEXT = new TextEncoder();
export const FRAME_INFO = "circle-e2ee v1 frame";
export const RATCHET_INFO = "circle-e2ee v1 ratchet";
export const WRAP_INFO = "circle-e2ee v1 wrap";
export const AAD_LABEL = "circle-e2ee v1";
export const IV_BYTES = 12;
export const KID_BYTES = 4;
/** iv || kid || epoch after the ciphertext. */
export const TRAILER_BYTES = IV_BYTES + KID_BYTES + 1;
const TAG_BYTES = 16;

export function utf8(text: string): Bytes {
  return TEXT.encode(text) as Bytes;
}

export function concat(...parts: Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function randomBytes(n: number): Bytes {
  return crypto.getRandomValues(new Uint8Array(n));
}

export function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Bytes of a base64url text (padding optional); null if it is not one. */
export function fromB64url(text: string): Bytes | null {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text)) return null;
  try {
    const s = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytewise order of two byte strings (a shorter prefix first). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return compareBytes(a, b) === 0;
}

async function hkdfBits(ikm: Bytes, salt: Bytes, info: Bytes, bits = 256): Promise<Bytes> {
  const base = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, base, bits));
}

/** An AES-256-GCM key from HKDF-SHA256(ikm, salt, info). */
export async function hkdfAesKey(ikm: Bytes, salt: Bytes, info: Bytes): Promise<CryptoKey> {
  const raw = await hkdfBits(ikm, salt, info);
  return crypto.subtle.importKey("raw", raw, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
}

export function frameKey(material: Bytes): Promise<CryptoKey> {
  return hkdfAesKey(material, new Uint8Array(0), utf8(FRAME_INFO));
}

export function ratchet(material: Bytes): Promise<Bytes> {
  return hkdfBits(material, new Uint8Array(0), utf8(RATCHET_INFO));
}

export async function sha256(data: Bytes): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

/** A key's fingerprint: the first 16 hex digits of SHA-256(material) (never the material). */
export async function fingerprint(material: Bytes): Promise<string> {
  return hex((await sha256(material)).subarray(0, 8));
}

export type FrameKind = "audio" | "video-key" | "video";

/** Bytes left in the clear at the start of a frame of `length` bytes. */
export function clearBytes(kind: FrameKind, length: number): number {
  return Math.min(length, kind === "video-key" ? 10 : kind === "video" ? 3 : 1);
}

export async function encryptFrame(key: CryptoKey, kid: Bytes, epoch: number, kind: FrameKind,
  data: ArrayBuffer): Promise<ArrayBuffer> {
  const bytes = new Uint8Array(data);
  const clear = bytes.slice(0, clearBytes(kind, bytes.length));
  const iv = randomBytes(IV_BYTES);
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: clear },
    key, bytes.slice(clear.length)));
  return concat(clear, sealed, iv, kid, Uint8Array.of(epoch & 0xff)).buffer;
}

/** The trailer of an encrypted frame: null if it cannot be one. */
export function frameTrailer(data: ArrayBuffer): { kid: Bytes; epoch: number } | null {
  if (data.byteLength < TRAILER_BYTES + TAG_BYTES) return null;
  const bytes = new Uint8Array(data);
  const end = bytes.length;
  return { kid: bytes.slice(end - 1 - KID_BYTES, end - 1), epoch: bytes[end - 1] };
}

/** The clear frame, or null (wrong key, damaged, not encrypted). */
export async function decryptFrame(key: CryptoKey, kind: FrameKind, data: ArrayBuffer): Promise<ArrayBuffer | null> {
  const bytes = new Uint8Array(data);
  const body = bytes.length - TRAILER_BYTES;
  if (body < TAG_BYTES) return null;
  // The sender's frame was body - 16 bytes long: that fixes how much it left in the clear.
  const clear = bytes.slice(0, clearBytes(kind, body - TAG_BYTES));
  const iv = bytes.slice(body, body + IV_BYTES);
  try {
    const plain = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: clear },
      key, bytes.slice(clear.length, body)));
    return concat(clear, plain).buffer;
  } catch {
    return null;
  }
}
