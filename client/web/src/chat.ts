// Chat in the session: the log (plain text, "You" for own messages) and the send form.

import { h } from "./dom";
import { emit } from "./connection";
import { labelled } from "./planner";
import { state, ui } from "./state";
import type { ChatMessage } from "./types";

/** Creates `ui.chatLog` and returns the chat panel's body: the log and the form. */
export function chatPanel(): [HTMLElement, HTMLElement] {
  ui.chatLog = h("ol", { class: "chat-log", "aria-live": "polite", "aria-label": "Chat messages" });
  const chatInput = h("input", { type: "text", maxlength: 2000, autocomplete: "off" });
  const chatForm = h("form", { class: "chat-form", onsubmit: (e: Event) => {
    e.preventDefault();
    const text = chatInput.value.trim();
    if (!text) return;
    void emit("chat", { text }).then((a) => { if (a.ok) chatInput.value = ""; });
  } }, labelled("Message to the room", chatInput), h("button", { type: "submit", class: "secondary", text: "Send" }));
  ui.chatForm = chatForm;
  return [ui.chatLog, chatForm];
}

/** A `chat` event from the server (ignored when no session screen is up). */
export function addChat(m: ChatMessage): void {
  if (!ui.chatLog) return;
  const mine = m.handle === state.view?.you.handle;
  ui.chatLog.append(h("li", { class: mine ? "mine" : "" },
    h("span", { class: "from", text: mine ? "You" : m.name }), ": ",
    h("span", { class: "text", text: m.text })));
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}
