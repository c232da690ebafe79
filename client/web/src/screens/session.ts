// The session screen: top bar, breakout banner, video grid with the own controls, and the
// side panels (therapist console for therapists; notices and chat for everyone).

import { h, setText } from "../dom";
import { syncReconnectingBanner } from "../connection";
import { buildAsideBanner, renderAsideBanner } from "../aside";
import { renderBreakoutBanner } from "../breakout/banner";
import { chatPanel } from "../chat";
import { buildShareStage, buildTalkPanel, renderShare, renderTalk } from "../share";
import { buildConsole, renderConsole } from "../therapist/console";
import { app, state, ui } from "../state";
import { isClinician, isObserver, roleLabel } from "../types";
import { show } from "./router";
import { renderE2eeStatus } from "../e2ee";
import { buildControls, renderControls } from "./sessionControls";
import { renderTiles } from "./videoGrid";

export function renderSession(): void {
  const view = state.view;
  if (!view) return;
  // Therapists and co-therapists alike get the console (they have the same powers).
  const therapist = isClinician(view.you.role);
  if (state.screen !== "session") {
    show("session");
    ui.banner = h("div", { class: "banner", role: "status", hidden: true, text: "Connection lost: reconnecting…" });
    ui.title = h("h1", { class: "title" });
    ui.breakout = h("section", { class: "breakout-banner", hidden: true, "aria-label": "Your breakout room" });
    ui.grid = h("div", { class: "grid", "aria-label": "Participants' video" });
    ui.controls = h("div", { class: "controls", role: "toolbar", "aria-label": "Your controls" });
    ui.notices = h("ul", { class: "notices", "aria-live": "polite", "aria-label": "Notices" });
    ui.e2ee = h("span", { id: "e2ee-status", class: "e2ee-status" });
    // Built before the console: labelled() numbers the field ids in creation order.
    const chat = chatPanel();
    const side = h("aside", { class: "side", "aria-label": therapist ? "Therapist console" : "Messages and chat" });
    if (therapist) buildConsole(side);
    // Talk time beside the participants (before the breakout planner).
    if (therapist) side.insertBefore(section("Talk time", "talk", ...buildTalkPanel()), side.querySelector(".panel-breakouts"));
    side.append(section("Notices", "notices", ui.notices), section("Chat", "chat", ...chat));
    app.append(ui.banner, h("header", { class: "topbar" }, ui.title,
      h("span", { class: "who", text: `${view.you.name ?? ""}${therapist || isObserver(view.you.role) ? ` · ${roleLabel(view.you.role)}` : ""}` }),
      ui.e2ee),
      ui.breakout, buildAsideBanner(),
      h("div", { class: "layout" }, h("section", { class: "stage", "aria-label": "Session" }, buildShareStage(), ui.grid, ui.controls), side));
    buildControls(therapist);
    syncReconnectingBanner();
  }
  setText(ui.title, view.session.title || "Session");
  renderE2eeStatus();
  renderControls();
  renderTiles();
  renderBreakoutBanner();
  renderAsideBanner();
  renderShare();
  if (therapist) renderTalk();
  // Observers read the chat; they write only where the session allows it.
  ui.chatForm.hidden = isObserver(view.you.role) && !view.session.observers_may_chat;
  if (therapist) renderConsole();
}

/** A collapsible side panel (open by default). */
export function section(title: string, key: string, ...body: HTMLElement[]): HTMLElement {
  return h("details", { class: `panel panel-${key}`, open: true }, h("summary", { text: title }), ...body);
}
