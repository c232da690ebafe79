// The session screen: top bar, breakout banner, video grid with the own controls, and the
// side panels (therapist console for therapists; notices and chat for everyone).

import { h, setText } from "../dom";
import { syncReconnectingBanner } from "../connection";
import { renderBreakoutBanner } from "../breakout/banner";
import { chatPanel } from "../chat";
import { buildConsole, renderConsole } from "../therapist/console";
import { app, state, ui } from "../state";
import { show } from "./router";
import { buildControls, renderControls } from "./sessionControls";
import { renderTiles } from "./videoGrid";

export function renderSession(): void {
  const view = state.view;
  if (!view) return;
  const therapist = view.you.role === "therapist";
  if (state.screen !== "session") {
    show("session");
    ui.banner = h("div", { class: "banner", role: "status", hidden: true, text: "Connection lost: reconnecting…" });
    ui.title = h("h1", { class: "title" });
    ui.breakout = h("section", { class: "breakout-banner", hidden: true, "aria-label": "Your breakout room" });
    ui.grid = h("div", { class: "grid", "aria-label": "Participants' video" });
    ui.controls = h("div", { class: "controls", role: "toolbar", "aria-label": "Your controls" });
    ui.notices = h("ul", { class: "notices", "aria-live": "polite", "aria-label": "Notices" });
    // Built before the console: labelled() numbers the field ids in creation order.
    const chat = chatPanel();
    const side = h("aside", { class: "side", "aria-label": therapist ? "Therapist console" : "Messages and chat" });
    if (therapist) buildConsole(side);
    side.append(section("Notices", "notices", ui.notices), section("Chat", "chat", ...chat));
    app.append(ui.banner, h("header", { class: "topbar" }, ui.title,
      h("span", { class: "who", text: `${view.you.name ?? ""}${therapist ? " · therapist" : ""}` })),
      ui.breakout,
      h("div", { class: "layout" }, h("section", { class: "stage", "aria-label": "Session" }, ui.grid, ui.controls), side));
    buildControls(therapist);
    syncReconnectingBanner();
  }
  setText(ui.title, view.session.title || "Session");
  renderControls();
  renderTiles();
  renderBreakoutBanner();
  if (therapist) renderConsole();
}

/** A collapsible side panel (open by default). */
export function section(title: string, key: string, ...body: HTMLElement[]): HTMLElement {
  return h("details", { class: `panel panel-${key}`, open: true }, h("summary", { text: title }), ...body);
}
