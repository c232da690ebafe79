// Shapes of the server -> client messages (signaling/views.py, signaling/gateway.py).

export type Muted = { audio: boolean; video: boolean };
export type Role = "client" | "therapist" | "family" | "co_therapist" | "observer";

/** Clinicians (therapist, co-therapist) run the session and get the therapist console;
 * clients and family members wait, check in and see peers by handle. */
export function isClinician(role: Role | null | undefined): boolean {
  return role === "therapist" || role === "co_therapist";
}

/** How a role is named on screen ("" for a client: the default needs no label). */
export function roleLabel(role: Role | null | undefined): string {
  return role === "therapist" ? "therapist" : role === "co_therapist" ? "co-therapist"
    : role === "family" ? "family" : role === "observer" ? "observing" : "";
}

/** An observer (the invite role: a trainee or supervisor) only listens and watches. Not the
 * breakout role "observer", which a client holds in a role-play room. */
export function isObserver(role: Role | null | undefined): boolean {
  return role === "observer";
}

/** Room ids of private asides (a clinician and one client): `aside-1`, `aside-2`, … */
export function isAsideRoom(room: string | null | undefined): boolean {
  return !!room && room.startsWith("aside-");
}

/** An open aside, as clinicians see it (`asides` in their view). */
export interface AsideView {
  id: string;
  participant_id: string;
  clinician_id: string;
  since: string;
}

/** A check-in (`checkin` event) as the server reports it. */
export interface CheckinView {
  location: "home" | "other";
  region: string;
  consent: boolean;
  pledge: boolean;
  at: string;
}
export type Status = "waiting" | "admitted" | "denied" | "removed" | "left";

export interface PeerView {
  /** The real participant id for therapists; for clients the same per-session handle. */
  id: string;
  /** What the relay names this person's streams (msid) and peers know them by. */
  handle: string;
  name: string;
  role: Role;
  status: Status;
  room: string | null;
  connected?: boolean;
  muted: Muted;
  /** Clinicians' views only: the part of `muted` a clinician holds (the rest is the
   * person's own mute, which only they lift). */
  muted_by_therapist?: Muted;
  hand: boolean;
  breakout_role?: string | null;
  /** Clients' and observers' views: this person stepped out (is in an aside; not why). */
  stepped_out?: boolean;
  /** Clinicians' views only, for clients and family members. */
  checkin?: CheckinView | null;
  /** Shares a screen now (in this room). */
  sharing?: boolean;
  /** This person's public key (ECDH P-256, base64url) for end-to-end encryption; null: none. */
  key?: string | null;
}

export interface WaitingView {
  id: string;
  handle?: string;
  name: string;
  role: Role;
  since: string | null;
  connected?: boolean;
  checkin?: CheckinView | null;
}

export interface SecondDeviceView {
  id: string;
  name: string;
  role: Role;
  status: Status;
  since: string | null;
}

export interface RoomView {
  id: string;
  name: string;
  scenario: string;
  members: string[];
  roles: Record<string, string>;
}

export interface PlanRoomWire {
  name: string;
  participant_ids: string[];
  roles: Record<string, string>;
  scenario: string;
}

export interface SavedPlan {
  rooms?: PlanRoomWire[];
  auto?: { count: number; strategy: string };
  minutes?: number;
  scenario?: string;
}

export interface BreakoutsView {
  open: boolean;
  ends_at: string | null;
  closing_at?: string | null;
  rooms: RoomView[];
  saved?: SavedPlan | null;
}

export interface View {
  rev: number;
  session: {
    id: string; title: string; kind: string; locked: boolean; ended: boolean;
    /** Clients and family members must check in before they can be admitted. */
    checkin_required?: boolean;
    service?: string;
    /** Observers may send chat in this session (else they only read it). */
    observers_may_chat?: boolean;
    /** Clients and family members may share a screen (clinicians always may). */
    clients_may_share?: boolean;
    /** Media is end-to-end encrypted (issue 16): every page must present a key. */
    e2ee?: boolean;
  };
  you: {
    id: string;
    handle?: string;
    name?: string;
    role: Role | null;
    status: Status;
    room: string | null;
    breakout_role: string | null;
    /** What the relay drops: this person's own mute or a clinician's. */
    muted?: Muted;
    /** This person's own mute (they lift it: `mute` with their own id). */
    muted_self?: Muted;
    /** A clinician's mute: this person cannot lift it. */
    muted_by_therapist?: Muted;
    hand?: boolean;
    /** "waiting": this connection is the person's second device, waiting for the therapist. */
    second_device?: "waiting";
    /** Clients and family members: their own latest check-in (null before one). */
    checkin?: CheckinView | null;
    /** In a private aside: its room, since when, with whom (an id or a handle). */
    aside?: { id: string; since: string; with: string | null };
    /** This person shares a screen now; and whether they may start one. */
    sharing?: boolean;
    may_share?: boolean;
    /** This page's public key as the server knows it (e2ee). */
    key?: string | null;
  };
  /** The screen share in this person's room (one at a time): who, and the msid stream id
   * its track arrives with (`<handle>-screen`). */
  share?: { id: string; handle: string; stream: string } | null;
  /** Clinicians only: seconds each participant spoke (by id), measured by the relay. */
  talk?: Record<string, number>;
  participants: PeerView[];
  waiting?: WaitingView[];
  expected?: { id: string; name: string; role: Role }[];
  /** Therapists only: people whose second device waits for a decision (`second_device`). */
  second_devices?: SecondDeviceView[];
  /** Clinicians only: the asides open now. */
  asides?: AsideView[];
  breakouts?: BreakoutsView;
  /** When the server sent this view, by its clock (see serverClock.ts). */
  server_time?: string;
}

export interface Notice {
  kind: string;
  text: string;
  room?: string;
  participant_id?: string;
}

export interface ChatMessage {
  /** The sender's id for therapists, its handle for clients. */
  from: string;
  handle: string;
  name: string;
  text: string;
  room: string;
  at: string;
}

export const ROLES = ["protagonist", "antagonist", "auxiliary", "double", "observer"] as const;
