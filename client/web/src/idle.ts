// Automatic logoff of idle sessions (HIPAA 164.312(a)(2)(iii)).
//
// "Activity" is keyboard, mouse, touch or wheel input on this page. Two policies:
//  - sign out: screens where nothing is happening for the person (device check, the end
//    screens: denied, ended, left, ...) are cleared after `signOutMs` (default 30 minutes);
//  - ask first: in the waiting room and in the session someone may just be watching and
//    listening, so after `promptMs` (default 60 minutes) an "Are you still there?" dialog
//    counts down `graceMs` (default 2 minutes) and only then leaves.
//
// Defaults come from <meta name="circle-idle-*"> in index.html (so a clinic can change them
// in the built page); `window.circleIdle = {signOutMs, promptMs, graceMs}` overrides them
// (the browser tests use short timeouts). Both are read on every check.

export interface IdleConfig {
  signOutMs: number;
  promptMs: number;
  graceMs: number;
}

const DEFAULTS: IdleConfig = { signOutMs: 30 * 60_000, promptMs: 60 * 60_000, graceMs: 2 * 60_000 };

function meta(name: string, scale: number): number | undefined {
  const content = document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content;
  const value = content === undefined ? NaN : Number(content);
  return Number.isFinite(value) && value > 0 ? value * scale : undefined;
}

export function idleConfig(): IdleConfig {
  const fromPage: Partial<IdleConfig> = {
    signOutMs: meta("circle-idle-signout-minutes", 60_000),
    promptMs: meta("circle-idle-prompt-minutes", 60_000),
    graceMs: meta("circle-idle-grace-seconds", 1000),
  };
  const override = (window as unknown as { circleIdle?: Partial<IdleConfig> }).circleIdle ?? {};
  const out = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS) as (keyof IdleConfig)[]) {
    for (const source of [fromPage, override]) {
      const v = Number(source[key]);
      if (source[key] !== undefined && Number.isFinite(v) && v > 0) out[key] = v;
    }
  }
  return out;
}

let lastActivity = Date.now();
let paused = false;

/** Count input on this page as activity (while the "still there?" dialog is not open). */
export function watchActivity(): void {
  const seen = () => { if (!paused) lastActivity = Date.now(); };
  for (const type of ["keydown", "pointerdown", "pointermove", "wheel", "touchstart", "input"]) {
    window.addEventListener(type, seen, { capture: true, passive: true });
  }
}

/** Restart the idle clock (a new screen, or "I'm still here"). */
export function resetIdle(): void {
  lastActivity = Date.now();
}

/** While the dialog asks, stray mouse moves do not count: only its button does. */
export function pauseActivity(on: boolean): void {
  paused = on;
}

export function idleFor(): number {
  return Date.now() - lastActivity;
}
