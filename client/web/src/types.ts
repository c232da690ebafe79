// Shapes of the server -> client messages (signaling/views.py, signaling/gateway.py).

export type Muted = { audio: boolean; video: boolean };
export type Role = "client" | "therapist";
export type Status = "waiting" | "admitted" | "denied" | "removed" | "left";

export interface PeerView {
  id: string;
  name: string;
  role: Role;
  status: Status;
  room: string | null;
  connected?: boolean;
  muted: Muted;
  hand: boolean;
  breakout_role?: string | null;
}

export interface WaitingView {
  id: string;
  name: string;
  role: Role;
  since: string | null;
  connected?: boolean;
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
  session: { id: string; title: string; kind: string; locked: boolean; ended: boolean };
  you: {
    id: string;
    name?: string;
    role: Role | null;
    status: Status;
    room: string | null;
    breakout_role: string | null;
    muted?: Muted;
    hand?: boolean;
  };
  participants: PeerView[];
  waiting?: WaitingView[];
  expected?: { id: string; name: string; role: Role }[];
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
  from: string;
  name: string;
  text: string;
  room: string;
  at: string;
}

export const ROLES = ["protagonist", "antagonist", "auxiliary", "double", "observer"] as const;
