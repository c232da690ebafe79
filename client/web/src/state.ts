// The page's shared state, in one place and named: every module reads and writes these
// fields explicitly (`state.view`, `ui.grid`) instead of keeping hidden module globals.

import type { Socket } from "socket.io-client";
import type { RelayPeer } from "./media";
import type { Planner } from "./planner";
import type { Notice, View } from "./types";

/** The one element every screen is drawn into. */
export const app = document.getElementById("app")!;

/** The connection's way back (connection.ts): where to connect and how the last one went. */
export interface Link {
  /** Nodes in rotation: the join link's `nodes=` (else this page's origin), then the
   * server's `config.nodes` not among them. */
  nodes: string[];
  /** The part of `nodes` that came with the page. */
  given: string[];
  /** The node of the current (or last) connection; "" before the first. */
  url: string;
  /** Attempts since the connection was lost: the backoff's exponent. */
  attempt: number;
  /** Index in `nodes` of the node lost: the rotation starts after it (-1: none). */
  lost: number;
  /** The pending attempt's timer. */
  timer: number | undefined;
  connectedAt: number;
  /** The node asked this connection to move (`reconnect`) before closing it. */
  announced: boolean;
  /** This connection (or the one being opened) follows an unannounced server disconnect. */
  afterUnannounced: boolean;
  reopeningAfterUnannounced: boolean;
}

export interface PageState {
  /** The join token (sessionStorage `circle.token`); cleared on sign-out. */
  token: string;
  /** The clinic's STUN/TURN servers, from the server's `config` message. */
  iceServers: RTCIceServer[];
  /** The current socket: a new one (and a new Manager) for every connection attempt,
   * since a Manager is bound to one URL. */
  socket: Socket | null;
  link: Link;
  /** When the "reconnecting" banner went up, and the timer that will take it down. */
  banner: { shownAt: number; timer: number | undefined };
  /** The latest `state` view (newest `rev` wins). */
  view: View | null;
  /** Name of the screen on display ("device", "waiting", "session", "end-<kind>", ...). */
  screen: string;
  /** Own camera/microphone, chosen on the device check. */
  local: MediaStream | null;
  audioOnly: boolean;
  micId: string;
  camId: string;
  /** Own mutes asked for and not yet confirmed by the server: sending stops at once (the
   * server's record of this person's mutes is `view.you.muted_self` / `muted`). */
  selfMuted: { audio: boolean; video: boolean };
  /** The one peer connection to the relay, while admitted and connected. */
  peer: RelayPeer | null;
  /** Incoming media by publisher participant id. */
  streams: Map<string, MediaStream>;
  /** After a first connect, errors mean "reconnecting", not "cannot reach the server yet". */
  connectedOnce: boolean;
  waitingSince: number;
  /** Denied/removed reasons arrive as a notice before the `state` view that says so. */
  lastNotice: Notice | null;
  /** An end screen is up: later events must not bring another screen back. */
  finished: boolean;
  planner: Planner | null;
  /** Stops the device check's microphone level meter. */
  meterStop: (() => void) | null;
  /** The device check's chain of device changes; Join waits for the last one. */
  opening: Promise<void>;
  idlePrompt: { dialog: HTMLDialogElement; count: HTMLElement; deadline: number } | null;
  signingOut: boolean;
  /** The waiting room's check-in form is open again ("Change") over an earlier check-in. */
  checkinEditing: boolean;
  /** A clinician sent this person back to the waiting room (the notice's calm text; "" else). */
  backToWaiting: string;
  /** The screen (getDisplayMedia track) this page shares, while it shares (share.ts). */
  screenTrack: MediaStreamTrack | null;
}

export const state: PageState = {
  token: "",
  iceServers: [],
  socket: null,
  link: {
    nodes: [], given: [], url: "", attempt: 0, lost: -1, timer: undefined, connectedAt: 0,
    announced: false, afterUnannounced: false, reopeningAfterUnannounced: false,
  },
  banner: { shownAt: 0, timer: undefined },
  view: null,
  screen: "",
  local: null,
  audioOnly: false,
  micId: "",
  camId: "",
  selfMuted: { audio: false, video: false },
  peer: null,
  streams: new Map<string, MediaStream>(),
  connectedOnce: false,
  waitingSince: 0,
  lastNotice: null,
  finished: false,
  planner: null,
  meterStop: null,
  opening: Promise.resolve(),
  idlePrompt: null,
  signingOut: false,
  checkinEditing: false,
  backToWaiting: "",
  screenTrack: null,
};

/** Elements of the current screen that later updates need (emptied whenever the screen
 * changes): banner, waited, notices, checkin (waiting room), title, breakout, grid, controls, chatLog, mic, cam,
 * hand, help, lock, end; for therapists also waitingList, waitSend, waitForm, admitAll,
 * expected, people. */
export const ui: Record<string, HTMLElement> = {};
