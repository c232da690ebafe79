// The page's ECDH P-256 key pair (made once per page load, private key not extractable),
// the wrap keys between this page and each peer, key envelopes, and the safety code.
//
//   wrap key = HKDF-SHA256(ECDH(mine, theirs, 256), salt = utf8(sessionId),
//              info = utf8("circle-e2ee v1 wrap") || lowerPub || higherPub) -> AES-256-GCM
//   wrapped  = iv(12) || AES-GCM(material, aad = utf8("circle-e2ee v1") || senderPub ||
//              recipientPub || [epoch] || kid(4))

import {
  AAD_LABEL, type Bytes, IV_BYTES, WRAP_INFO, b64url, compareBytes, concat, fromB64url, hkdfAesKey, randomBytes,
  sha256, utf8,
} from "./frameCrypto";

export interface Identity {
  privateKey: CryptoKey;
  /** The 65-byte uncompressed public key. */
  raw: Bytes;
  /** Its base64url (no padding): the connect auth's `e2ee_key`. */
  text: string;
}

export async function makeIdentity(): Promise<Identity> {
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, raw, text: b64url(raw) };
}

/** Wrap keys by session id and peer public key (base64url). */
const wrapKeys = new Map<string, Promise<CryptoKey>>();

export function wrapKey(me: Identity, sessionId: string, peer: Bytes): Promise<CryptoKey> {
  const id = `${sessionId}\n${b64url(peer)}`;
  let key = wrapKeys.get(id);
  if (!key) {
    key = (async () => {
      const pub = await crypto.subtle.importKey("raw", peer, { name: "ECDH", namedCurve: "P-256" }, false, []);
      const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: "ECDH", public: pub }, me.privateKey, 256));
      const [lo, hi] = compareBytes(me.raw, peer) <= 0 ? [me.raw, peer] : [peer, me.raw];
      return hkdfAesKey(bits, utf8(sessionId), concat(utf8(WRAP_INFO), lo, hi));
    })();
    key.catch(() => wrapKeys.delete(id));
    wrapKeys.set(id, key);
  }
  return key;
}

function envelopeAad(sender: Bytes, recipient: Bytes, epoch: number, kid: Bytes): Bytes {
  return concat(utf8(AAD_LABEL), sender, recipient, Uint8Array.of(epoch & 0xff), kid);
}

/** `material` sealed for `peer` (base64url of iv || ciphertext). */
export async function wrap(me: Identity, sessionId: string, peer: Bytes, epoch: number, kid: Bytes,
  material: Bytes): Promise<string> {
  const key = await wrapKey(me, sessionId, peer);
  const iv = randomBytes(IV_BYTES);
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: envelopeAad(me.raw, peer, epoch, kid) }, key, material));
  return b64url(concat(iv, sealed));
}

/** The material `sender` sealed for this page, or null (not for us, damaged, forged). */
export async function unwrap(me: Identity, sessionId: string, sender: Bytes, epoch: number, kid: Bytes,
  wrapped: string): Promise<Bytes | null> {
  const bytes = fromB64url(wrapped);
  if (!bytes || bytes.length <= IV_BYTES) return null;
  try {
    const key = await wrapKey(me, sessionId, sender);
    const plain = new Uint8Array(await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bytes.slice(0, IV_BYTES), additionalData: envelopeAad(sender, me.raw, epoch, kid) },
      key, bytes.slice(IV_BYTES)));
    return plain.length === 32 ? plain : null;
  } catch {
    return null;
  }
}

/** SHA-256 over the raw public keys (sorted bytewise, concatenated); the first 5 bytes as
 * a big-endian number modulo 10^12, as 12 digits in groups of 4 ("0412 9933 1870"). */
export async function safetyCode(keys: Bytes[]): Promise<string> {
  const sorted = [...keys].sort(compareBytes);
  const digest = await sha256(concat(...sorted));
  let n = 0;
  for (let i = 0; i < 5; i++) n = n * 256 + digest[i];
  // Five bytes reach 2^40 - 1 (13 digits): the code is that number modulo 10^12.
  const digits = String(n % 1e12).padStart(12, "0");
  return `${digits.slice(0, 4)} ${digits.slice(4, 8)} ${digits.slice(8, 12)}`;
}
