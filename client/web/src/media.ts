// The one RTCPeerConnection to the relay. Contract (docs/protocol.md, v1): the browser sends
// the first offer once admitted; the relay answers; later the relay offers and we answer.
// No trickle: every SDP is sent after ICE gathering completed. Every signal is applied
// strictly in arrival order through one promise chain.

export type Ack = { ok: boolean; error?: { code: string; message: string } };
export type SignalMessage = { type: "offer" | "answer"; sdp: string };
/** End-to-end encryption's hooks (e2ee/index.ts): given only in e2ee sessions. */
export type TransformHooks = {
  sender(transceiver: RTCRtpTransceiver): void;
  receiver(receiver: RTCRtpReceiver): void;
};

/** The clinic's STUN/TURN servers, from the server's `config` message (empty in tests).
 * Always explicit: a browser given none never falls back to a public server. */
export function rtcConfig(iceServers: RTCIceServer[]): RTCConfiguration {
  return { iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" };
}
const GATHER_TIMEOUT_MS = 5000;

export class RelayPeer {
  readonly pc: RTCPeerConnection;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  /** Our own senders by kind, once the first offer made them. */
  private readonly senders = new Map<string, RTCRtpSender>();
  /** What each sender should carry (null: nothing, so no packets), set by `setSending`. */
  private desired: Record<"audio" | "video", MediaStreamTrack | null> | null = null;
  /** The screen-share section: offered from the start without a track (share.ts). */
  private screen: RTCRtpTransceiver | null = null;
  private screenTrack: MediaStreamTrack | null = null;

  constructor(
    private readonly local: MediaStream | null,
    private readonly send: (message: SignalMessage) => Promise<Ack>,
    private readonly onStream: (publisherId: string, stream: MediaStream) => void,
    private readonly onProblem: (text: string, detail?: string) => void,
    iceServers: RTCIceServer[] = [],
    private readonly e2ee?: TransformHooks,
  ) {
    this.pc = new RTCPeerConnection(rtcConfig(iceServers));
    this.pc.addEventListener("track", (event) => {
      this.e2ee?.receiver(event.receiver);
      const stream = event.streams[0];
      // The stream id (msid) of every forwarded track is the publisher's handle (never its id).
      if (stream) this.onStream(stream.id, stream);
    });
  }

  /** The first offer: our own tracks (send-only), or a receive-only transceiver. */
  start(): void {
    this.enqueue(async () => {
      const tracks = this.local ? this.local.getTracks() : [];
      for (const track of tracks) {
        const transceiver = this.pc.addTransceiver(track, { direction: "sendonly", streams: [this.local!] });
        this.e2ee?.sender(transceiver);
        this.senders.set(track.kind, transceiver.sender);
      }
      if (this.desired) this.setSending(this.desired);
      // The screen share's own section, trackless until a share starts: sharing is then a
      // replaceTrack, never a renegotiation. The relay knows it by `a=content:slides`.
      this.screen = this.pc.addTransceiver("video", { direction: "sendonly" });
      this.e2ee?.sender(this.screen);
      if (this.screenTrack) await this.screen.sender.replaceTrack(this.screenTrack);
      if (tracks.length === 0) this.pc.addTransceiver("audio", { direction: "recvonly" });
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      await this.gathered();
      await this.reply("offer");
    });
  }

  /** A `signal` event from the relay. */
  handle(message: SignalMessage): void {
    this.enqueue(async () => {
      if (message.type === "answer") {
        await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        return;
      }
      await this.pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      await this.gathered();
      await this.reply("answer");
    });
  }

  /** Send these tracks (null: stop sending that kind: the sender carries no track, so no
   * RTP at all leaves, unlike a disabled track's black frames and silence). No renegotiation:
   * the relay keeps the m-section and sees the packets stop, or start again. */
  setSending(tracks: Record<"audio" | "video", MediaStreamTrack | null>): void {
    this.desired = tracks;
    for (const [kind, sender] of this.senders) {
      const want = tracks[kind as "audio" | "video"] ?? null;
      if (sender.track === want) continue;
      sender.replaceTrack(want).catch((err) => {
        if (!this.closed) this.onProblem(`Media problem: ${err instanceof Error ? err.name : "error"}`, String(err));
      });
    }
  }

  /** Share `track` as the screen (null: stop; no packets leave). */
  setScreen(track: MediaStreamTrack | null): void {
    this.screenTrack = track;
    if (!this.screen || this.screen.sender.track === track) return;
    this.screen.sender.replaceTrack(track).catch((err) => {
      if (!this.closed) this.onProblem(`Media problem: ${err instanceof Error ? err.name : "error"}`, String(err));
    });
  }

  /** Whether our sender of `kind` carries a track (for the tests' debug hook). */
  sendingTrack(kind: "audio" | "video"): boolean {
    return !!this.senders.get(kind)?.track;
  }

  close(): void {
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
  }

  private async reply(type: "offer" | "answer"): Promise<void> {
    let sdp = this.pc.localDescription?.sdp;
    if (this.closed || !sdp) return;
    if (type === "offer" && this.screen?.mid) sdp = markScreen(sdp, this.screen.mid);
    const ack = await this.send({ type, sdp });
    if (!ack.ok) this.onProblem(`Media negotiation refused: ${ack.error?.message ?? "unknown"}`);
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.closed) return;
      try {
        await step();
      } catch (err) {
        if (!this.closed) this.onProblem(`Media problem: ${err instanceof Error ? err.name : "error"}`, String(err));
      }
    });
  }

  private gathered(): Promise<void> {
    if (this.pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (this.pc.iceGatheringState !== "complete") return;
        this.pc.removeEventListener("icegatheringstatechange", done);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.pc.removeEventListener("icegatheringstatechange", done);
        resolve(); // send what we have: host candidates come first
      }, GATHER_TIMEOUT_MS);
      this.pc.addEventListener("icegatheringstatechange", done);
    });
  }

  /** framesDecoded per publisher handle (for the tests' debug hook and the connection indicator). */
  async inbound(): Promise<Record<string, { video: number; audio: number }>> {
    const out: Record<string, { video: number; audio: number }> = {};
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const mid = s.mid as string | undefined;
      const pid = streamIdOf(this.pc, mid ?? null);
      if (!pid) return;
      const entry = (out[pid] ??= { video: 0, audio: 0 });
      if (s.kind === "video") entry.video += Number(s.framesDecoded ?? 0);
      else entry.audio += Number(s.packetsReceived ?? 0);
    });
    return out;
  }
}

/** `sdp` with the section of `mid` marked as the screen share (`a=content:slides`, RFC 4796):
 * only the text sent to the relay carries it (no munging of the local description). */
export function markScreen(sdp: string, mid: string): string {
  return sdp.split(/\r\nm=/).map((section, i) => {
    if (i === 0 || !new RegExp(`\r\na=mid:${mid.replace(/[^A-Za-z0-9]/g, "")}(\r\n|$)`).test(section + "\r\n")) return section;
    return section.replace(`\r\na=mid:${mid}`, `\r\na=mid:${mid}\r\na=content:slides`);
  }).join("\r\nm=");
}

/** The msid stream id of the m-section `mid` in the remote description. */
function streamIdOf(pc: RTCPeerConnection, mid: string | null): string | null {
  const sdp = pc.remoteDescription?.sdp;
  if (!sdp || mid === null) return null;
  const sections = sdp.split(/\r?\nm=/);
  for (const section of sections) {
    if (!new RegExp(`\\r?\\na=mid:${mid.replace(/[^A-Za-z0-9]/g, "")}\\r?(\\n|$)`).test("\n" + section + "\n")) continue;
    const msid = /a=msid:(\S+)/.exec(section);
    if (msid && msid[1] !== "-") return msid[1];
  }
  return null;
}
