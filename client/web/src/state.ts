// The page's shared state, in one place and named: every module reads and writes these
// fields explicitly (`state.view`, `ui.grid`) instead of keeping hidden module globals.

import type { Socket } from "socket.io-client";
import type { RelayPeer } from "./media";
import type { Planner } from "./planner";
import type { Notice, View } from "./types";

/** The one element every screen is drawn into. */
export const app = document.getElementById("app")!;

export interface PageState {
  /** The join token (sessionStorage `circle.token`); cleared on sign-out. */
  token: string;
  /** The clinic's STUN/TURN servers, from the server's `config` message. */
  iceServers: RTCIceServer[];
  socket: Socket | null;
  /** The latest `state` view (newest `rev` wins). */
  view: View | null;
  /** Name of the screen on display ("device", "waiting", "session", "end-<kind>", ...). */
  screen: string;
  /** Own camera/microphone, chosen on the device check. */
  local: MediaStream | null;
  audioOnly: boolean;
  micId: string;
  camId: string;
  /** Own mic/camera switched off by this person (the therapist's mute is `view.you.muted`). */
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
}

export const state: PageState = {
  token: "",
  iceServers: [],
  socket: null,
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
};

/** Elements of the current screen that later updates need (emptied whenever the screen
 * changes): banner, waited, notices, title, breakout, grid, controls, chatLog, mic, cam,
 * hand, help, lock, end; for therapists also waitingList, waitSend, waitForm, admitAll,
 * expected, people. */
export const ui: Record<string, HTMLElement> = {};
