// Automatic logoff, the page's side: which policy a screen has, the "Are you still there?"
// dialog, and signing out. The idle clock and the timeouts are in idle.ts.

import { duration, h, setText } from "./dom";
import { emit } from "./connection";
import { idleConfig, idleFor, pauseActivity, resetIdle } from "./idle";
import { endScreen } from "./screens/ended";
import { state } from "./state";
import { forgetToken } from "./token";

/** Screens where someone may just be watching and listening: ask before leaving. */
export function askFirst(name: string): boolean {
  return name === "waiting" || name === "session" || name === "second-device";
}

/** Once a second: ask, count down, or sign out, by the screen's policy. */
export function checkIdle(): void {
  if (state.signingOut) return;
  const cfg = idleConfig();
  const screen = state.screen;
  if (askFirst(screen)) {
    if (!state.idlePrompt && idleFor() >= cfg.promptMs) openIdlePrompt(cfg.graceMs);
    if (state.idlePrompt) {
      const left = state.idlePrompt.deadline - Date.now();
      if (left <= 0) void signOut();
      else setText(state.idlePrompt.count, `You will leave in ${duration(left + 999)}.`);
    }
  } else if ((screen === "device" || screen.startsWith("end-")) && screen !== "end-signed-out") {
    if (idleFor() >= cfg.signOutMs) void signOut();
  }
}

function openIdlePrompt(graceMs: number): void {
  pauseActivity(true);
  const count = h("p", { class: "idle-count", role: "timer", "aria-live": "off" });
  const stay = h("button", { type: "button", class: "primary big", text: "I'm still here",
    onclick: () => closeIdlePrompt() });
  const inSession = state.screen === "session";
  const dialog = h("dialog", { class: "idle-prompt", role: "alertdialog", "aria-modal": "true",
    "aria-labelledby": "idle-title", "aria-describedby": "idle-text" },
    h("h2", { id: "idle-title", text: "Are you still there?" }),
    h("p", { id: "idle-text", text: `There has been no keyboard, mouse or touch activity here for a while. For your privacy you will leave the ${inSession ? "session" : "waiting room"} unless you answer.` }),
    count, stay);
  // Escape is an answer too: somebody is at the keyboard.
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); closeIdlePrompt(); });
  document.body.append(dialog);
  state.idlePrompt = { dialog, count, deadline: Date.now() + graceMs };
  setText(count, `You will leave in ${duration(graceMs + 999)}.`);
  dialog.showModal();
  stay.focus();
  document.title = "Are you still there? · Circle";
  chime();
}

/** "I'm still here" (or a new screen): close the dialog and restart the clock. */
export function closeIdlePrompt(): void {
  pauseActivity(false);
  resetIdle();
  if (!state.idlePrompt) return;
  const { dialog } = state.idlePrompt;
  state.idlePrompt = null;
  if (dialog.open) dialog.close();
  dialog.remove();
  document.title = "Circle";
}

/** A short soft tone, for someone who is listening rather than watching. */
function chime(): void {
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 660;
    gain.gain.setValueAtTime(0.0001, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.15, ctx.currentTime + 0.05);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.6);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.65);
    osc.onended = () => { void ctx.close().catch(() => undefined); };
  } catch {
    /* no audio output: the dialog is enough */
  }
}

async function signOut(): Promise<void> {
  if (state.signingOut) return;
  state.signingOut = true;
  try {
    closeIdlePrompt();
    // Leave properly (the therapist sees it), but never wait long for the server.
    if (askFirst(state.screen) && state.socket?.connected && !state.finished) {
      await Promise.race([emit("leave", {}), new Promise((r) => setTimeout(r, 3000))]);
    }
    forgetToken();
    state.token = "";
    endScreen("You were signed out",
      "For your privacy, this page signs you out after a time without activity. To join again, open the link from your invitation.",
      "signed-out");
  } finally {
    state.signingOut = false;
  }
}
