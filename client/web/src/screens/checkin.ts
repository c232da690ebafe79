// The check-in, at the top of the waiting room (clients and family members): where the
// person is (home or somewhere else), the state or province, consent to telehealth and, in
// group sessions, the group's confidentiality pledge. Sent as `checkin`; once the server has
// it, the card folds to one line with "Change". It sits in the waiting room rather than
// before it: the person is waiting (the therapist sees them) from the moment they connect,
// and the therapist's messages and the time waited stay in view while they answer.

import { clear, h, setText } from "../dom";
import { emit } from "../connection";
import { labelled } from "../planner";
import { state, ui } from "../state";
import { toast } from "../toast";
import { isClinician, type CheckinView } from "../types";

/** Accepted by the server (signaling/protocol.py REGION_PATTERN): CA, ON, NSW, US-CA, FR-75. */
const REGION = /^(?:[A-Z]{2}-[A-Z0-9]{1,3}|[A-Z]{2,3})$/;

const REGIONS: [string, string][] = [
  ["AL", "Alabama"], ["AK", "Alaska"], ["AZ", "Arizona"], ["AR", "Arkansas"], ["CA", "California"],
  ["CO", "Colorado"], ["CT", "Connecticut"], ["DE", "Delaware"], ["DC", "District of Columbia"],
  ["FL", "Florida"], ["GA", "Georgia"], ["HI", "Hawaii"], ["ID", "Idaho"], ["IL", "Illinois"],
  ["IN", "Indiana"], ["IA", "Iowa"], ["KS", "Kansas"], ["KY", "Kentucky"], ["LA", "Louisiana"],
  ["ME", "Maine"], ["MD", "Maryland"], ["MA", "Massachusetts"], ["MI", "Michigan"], ["MN", "Minnesota"],
  ["MS", "Mississippi"], ["MO", "Missouri"], ["MT", "Montana"], ["NE", "Nebraska"], ["NV", "Nevada"],
  ["NH", "New Hampshire"], ["NJ", "New Jersey"], ["NM", "New Mexico"], ["NY", "New York"],
  ["NC", "North Carolina"], ["ND", "North Dakota"], ["OH", "Ohio"], ["OK", "Oklahoma"], ["OR", "Oregon"],
  ["PA", "Pennsylvania"], ["PR", "Puerto Rico"], ["RI", "Rhode Island"], ["SC", "South Carolina"],
  ["SD", "South Dakota"], ["TN", "Tennessee"], ["TX", "Texas"], ["UT", "Utah"], ["VT", "Vermont"],
  ["VA", "Virginia"], ["WA", "Washington"], ["WV", "West Virginia"], ["WI", "Wisconsin"], ["WY", "Wyoming"],
  ["AB", "Alberta"], ["BC", "British Columbia"], ["MB", "Manitoba"], ["NB", "New Brunswick"],
  ["NL", "Newfoundland and Labrador"], ["NS", "Nova Scotia"], ["ON", "Ontario"],
  ["PE", "Prince Edward Island"], ["QC", "Quebec"], ["SK", "Saskatchewan"],
];

export const CONSENT_TEXT = "I agree to receive care by video or phone (telehealth) today, and I know I can ask to stop at any time.";
export const PLEDGE_TEXT = "I will keep what others share in this group private, and I am joining from a place where others cannot overhear.";

/** The check-in card of the waiting room (built once per waiting screen). */
export function buildCheckin(): HTMLElement {
  ui.checkin = h("section", { class: "checkin", "aria-labelledby": "checkin-title" });
  return ui.checkin;
}

/** Show the form (no check-in yet, or "Change"), else the one-line summary. */
export function renderCheckin(): void {
  const el = ui.checkin;
  const view = state.view;
  if (!el || !view) return;
  const you = view.you;
  el.hidden = isClinician(you.role);
  if (el.hidden) return;
  const done = you.checkin ?? null;
  const mode = done && !state.checkinEditing ? `done:${JSON.stringify(done)}` : "form";
  if (el.dataset.mode === mode) return; // rebuilt only when it changes: typing survives
  el.dataset.mode = mode;
  clear(el);
  if (mode === "form") el.append(...form(done, view.session.kind === "group", !!view.session.checkin_required));
  else el.append(...summary(done!));
}

function summary(done: CheckinView): HTMLElement[] {
  return [
    h("h2", { id: "checkin-title", text: "You have checked in" }),
    h("p", { class: "checkin-summary", text: describeCheckin(done) }),
    h("button", { type: "button", class: "link", text: "Change", "aria-label": "Change your check-in",
      onclick: () => { state.checkinEditing = true; renderCheckin(); } }),
  ];
}

/** One line, in the person's words: "At home · CA · telehealth consent given". */
export function describeCheckin(c: CheckinView): string {
  return [c.location === "home" ? "At home" : "Somewhere else", c.region,
    c.consent ? "telehealth consent given" : "no telehealth consent",
    c.pledge ? "group pledge given" : ""].filter(Boolean).join(" · ");
}

function form(previous: CheckinView | null, group: boolean, required: boolean): HTMLElement[] {
  const place = (value: "home" | "other", text: string) => {
    const id = `checkin-${value}`;
    return h("div", { class: "check" },
      h("input", { type: "radio", id, name: "checkin-location", value, required: true,
        checked: previous?.location === value }),
      h("label", { for: id, text }));
  };
  const region = h("input", { type: "text", class: "region", maxlength: 6, autocomplete: "address-level1",
    autocapitalize: "characters", spellcheck: "false", required: true, list: "checkin-regions",
    value: previous?.region ?? "", placeholder: "e.g. CA or ON" });
  const regions = h("datalist", { id: "checkin-regions" },
    ...REGIONS.map(([code, name]) => h("option", { value: code, label: name })));
  const consent = h("input", { type: "checkbox", id: "checkin-consent", checked: previous?.consent ?? false });
  const pledge = h("input", { type: "checkbox", id: "checkin-pledge", checked: previous?.pledge ?? false });
  const problem = h("p", { class: "problem", role: "status" });
  region.addEventListener("input", () => setText(problem, ""));
  const submit = h("button", { type: "submit", class: "primary", text: "Check in" });
  const f = h("form", { class: "checkin-form", onsubmit: (e: Event) => {
    e.preventDefault();
    const location = (f.querySelector<HTMLInputElement>("input[name=checkin-location]:checked"))?.value;
    const code = region.value.trim().toUpperCase();
    if (location !== "home" && location !== "other") { setText(problem, "Choose where you are right now."); return; }
    if (!REGION.test(code)) { setText(problem, "Enter your state or province as a short code, such as CA or ON."); region.focus(); return; }
    setText(problem, "");
    submit.disabled = true;
    const answers: Record<string, unknown> = { location, region: code, consent: consent.checked };
    if (group) answers.pledge = pledge.checked;
    void emit("checkin", answers).then((a) => {
      submit.disabled = false;
      if (!a.ok) return;
      state.checkinEditing = false;
      toast("Thank you: your therapist can see your check-in.", "info");
      renderCheckin();
    });
  } },
    h("fieldset", {}, h("legend", { text: "Where are you right now?" }),
      place("home", "At home"), place("other", "Somewhere else (work, school, a car…)")),
    labelled("State or province you are in now", region), regions,
    h("div", { class: "check" }, consent, h("label", { for: "checkin-consent", text: CONSENT_TEXT })),
    group ? h("div", { class: "check" }, pledge, h("label", { for: "checkin-pledge", text: PLEDGE_TEXT })) : null,
    problem,
    h("div", { class: "row" }, submit,
      previous ? h("button", { type: "button", class: "link", text: "Cancel",
        onclick: () => { state.checkinEditing = false; renderCheckin(); } }) : null),
  );
  return [
    h("h2", { id: "checkin-title", text: "Check in" }),
    h("p", { class: "hint", text: required
      ? "Please check in: your therapist can let you in once you have. It becomes part of your record."
      : "Before your session, tell your therapist where you are joining from. It becomes part of your record." }),
    f,
  ];
}
