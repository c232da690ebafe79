// Leaving, and the end screens (denied, removed, locked, bad link, ended, left, signed out):
// once one is up the connection, media and token are gone for good.

import { h, setText } from "../dom";
import { emit } from "../connection";
import { dropMedia, stopLocal } from "../mediaSession";
import { app, state } from "../state";
import { forgetToken } from "../token";
import { show } from "./router";

export async function leave(): Promise<void> {
  if (state.socket?.connected) await emit("leave", {});
  endScreen("You left the session", "You can close this window.", "left");
}

export function endScreen(title: string, text: string, kind = "error"): void {
  if (state.finished && state.screen === `end-${kind}`) {
    setText(app.querySelector(".end-text")!, text);
    return;
  }
  state.finished = true;
  state.socket?.disconnect();
  dropMedia();
  stopLocal();
  state.meterStop?.();
  forgetToken();
  show(`end-${kind}`);
  app.append(h("section", { class: `card end end-${kind}`, "aria-labelledby": "end-title" },
    h("h1", { id: "end-title", text: title }),
    h("p", { class: "end-text", text })));
  app.querySelector("h1")?.setAttribute("tabindex", "-1");
  (app.querySelector("h1") as HTMLElement | null)?.focus();
}
