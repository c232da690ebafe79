// The first screen: camera preview, microphone level, device choice, "audio only", Join.
// Nothing is sent to anybody until Join.

import { clear, h, setText } from "../dom";
import { join } from "../connection";
import { labelled } from "../planner";
import { app, state } from "../state";
import { show } from "./router";

export async function deviceCheck(): Promise<void> {
  show("device");
  const preview = h("video", { class: "preview", autoplay: true, playsInline: true, muted: true,
    "aria-label": "Your camera preview" });
  const meter = h("meter", { min: 0, max: 1, value: 0, "aria-label": "Microphone level" });
  const problem = h("p", { class: "problem", role: "status" });
  const camSelect = h("select", { onchange: () => { state.camId = camSelect.value; void reopen(); } });
  const micSelect = h("select", { onchange: () => { state.micId = micSelect.value; void reopen(); } });
  const audioOnlyBox = h("input", { type: "checkbox", id: "audio-only",
    onchange: () => { state.audioOnly = audioOnlyBox.checked; void reopen(); } });
  const joinButton = h("button", { type: "button", class: "primary big", text: "Join",
    onclick: () => { joinButton.disabled = true; void state.opening.then(join); } });
  app.append(h("section", { class: "card device", "aria-labelledby": "device-title" },
    h("h1", { id: "device-title", text: "Check your camera and microphone" }),
    h("p", { class: "hint", text: "Nobody sees or hears you until you join." }),
    preview,
    h("div", { class: "field" }, h("span", { class: "label", text: "Microphone level" }), meter),
    problem,
    labelled("Camera", camSelect),
    labelled("Microphone", micSelect),
    h("div", { class: "check" }, audioOnlyBox, h("label", { for: "audio-only", text: "Join with audio only (camera off)" })),
    joinButton,
  ));

  // One device change at a time: a late getUserMedia must not overwrite a newer choice.
  function reopen(): Promise<void> {
    state.opening = state.opening.then(reopenNow, reopenNow);
    return state.opening;
  }
  async function reopenNow(): Promise<void> {
    await openDevices(problem);
    const local = state.local;
    preview.srcObject = local && local.getVideoTracks().length ? local : null;
    preview.hidden = !preview.srcObject;
    if (preview.srcObject) preview.play().catch(() => undefined);
    state.meterStop?.();
    state.meterStop = startMeter(meter);
    await fillDevices(camSelect, micSelect);
  }
  await reopen();
  joinButton.focus();
}

/** (Re)open the chosen devices; without a camera fall back to audio, without both to listening. */
async function openDevices(problem: HTMLElement): Promise<void> {
  state.local?.getTracks().forEach((t) => t.stop());
  state.local = null;
  setText(problem, "");
  const { micId, camId, audioOnly } = state;
  const audio: MediaTrackConstraints | boolean = micId ? { deviceId: { exact: micId } } : true;
  const video: MediaTrackConstraints | false = audioOnly ? false
    : { ...(camId ? { deviceId: { exact: camId } } : {}), width: { ideal: 640 }, height: { ideal: 480 } };
  if (!navigator.mediaDevices?.getUserMedia) {
    setText(problem, "This browser cannot use a camera or microphone here. You can still join and listen.");
    return;
  }
  try {
    state.local = await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch {
    try {
      state.local = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      // Read again after the wait: "audio only" may have been ticked meanwhile.
      if (!state.audioOnly) setText(problem, "Your camera is not available: you will join with audio only.");
    } catch {
      setText(problem, "Your camera and microphone are not available. You can still join and listen.");
    }
  }
}

/** Device labels are only known once permission is given, so the lists are filled after opening. */
async function fillDevices(cam: HTMLSelectElement, mic: HTMLSelectElement): Promise<void> {
  let devices: MediaDeviceInfo[] = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    /* no devices */
  }
  const fill = (select: HTMLSelectElement, kind: MediaDeviceKind, current: string, track?: MediaStreamTrack) => {
    clear(select);
    const active = current || track?.getSettings().deviceId || "";
    devices.filter((d) => d.kind === kind).forEach((d, i) => select.append(h("option", {
      value: d.deviceId, text: d.label || `${kind === "videoinput" ? "Camera" : "Microphone"} ${i + 1}`,
      selected: d.deviceId === active })));
    select.disabled = select.options.length === 0;
  };
  fill(cam, "videoinput", state.camId, state.local?.getVideoTracks()[0]);
  fill(mic, "audioinput", state.micId, state.local?.getAudioTracks()[0]);
  cam.disabled = cam.disabled || state.audioOnly;
}

/** Drive the level meter from the microphone; returns the function that stops it. */
function startMeter(meter: HTMLMeterElement): () => void {
  const track = state.local?.getAudioTracks()[0];
  if (!track) return () => undefined;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const data = new Uint8Array(analyser.fftSize);
  const resume = () => { void ctx.resume().catch(() => undefined); };
  document.addEventListener("pointerdown", resume, { once: true });
  let running = true;
  const loop = () => {
    if (!running) return;
    analyser.getByteTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += ((v - 128) / 128) ** 2;
    meter.value = Math.min(1, Math.sqrt(sum / data.length) * 4);
    requestAnimationFrame(loop);
  };
  loop();
  return () => { running = false; void ctx.close().catch(() => undefined); };
}
