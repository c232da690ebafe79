// The page's one-second clock: idle check, time waited, wait times, breakout countdowns.

import { tickBreakoutBanner } from "./breakout/banner";
import { checkIdle } from "./logoff";
import { tickWaiting } from "./screens/waiting";
import { state } from "./state";
import { tickConsole } from "./therapist/console";

export function tick(): void {
  checkIdle();
  tickWaiting();
  if (state.screen === "session" && state.view) {
    tickConsole();
    tickBreakoutBanner();
    state.planner?.tick();
  }
}
