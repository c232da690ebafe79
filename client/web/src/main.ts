// Circle in the browser: one app for clients and therapists (the role comes from the
// `state` view). Screens: device check -> waiting room -> session (grid, chat, controls,
// breakouts); therapists also get the waiting list, participant controls and the planner.
// Everything the server sends is rendered as text (textContent), never as HTML.
//
// This file only starts the page; docs/web-client.md lists what each module does.

import "./style.css";
import { installDebugHooks } from "./debugHooks";
import { watchActivity } from "./idle";
import { deviceCheck } from "./screens/deviceCheck";
import { endScreen } from "./screens/ended";
import { state } from "./state";
import { tick } from "./ticker";
import { join } from "./connection";
import { readObserve, readToken } from "./token";

state.token = readToken();
watchActivity();
if (!state.token) {
  endScreen("This link is incomplete", "Open the link from your invitation again, or ask the clinic for a new one.");
} else if (readObserve()) {
  join();  // an observer never publishes: no camera check, no camera or microphone prompt
} else {
  void deviceCheck();
}
setInterval(tick, 1000);
installDebugHooks();
