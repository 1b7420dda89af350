// The microphone: getUserMedia -> Opus from a MediaRecorder where the browser has one (WebM or Ogg,
// a small part of PCM's bytes), else an AudioWorklet (s16le PCM; also with ?audio=pcm) -> a live
// stream (/v1/stream) or a session's publish socket, its events shown as captions.
import { CLOSE, api, connect, pageUrl } from "./protocol.js";
import { $, captionHandlers, setState } from "./captions.js";
import { chosenModel } from "./models.js";

const OPUS_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus"];
const OPUS_BITS_PER_S = 32000;
const OPUS_SLICE_MS = 100; // how often the recorder hands over what it has: the latency it adds

let socket = null, context = null, media = null, recorder = null;
let sending = Promise.resolve(); // the recorder's pieces, sent in order as ArrayBuffers

function opusType() {
  if (new URLSearchParams(location.search).get("audio") === "pcm" || typeof MediaRecorder === "undefined") return null;
  return OPUS_TYPES.find((type) => MediaRecorder.isTypeSupported(type)) || null;
}

async function openMicrophone() {
  media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
}

async function openWorklet() {
  try {
    context = new AudioContext({ sampleRate: 16000 });
  } catch (e) {
    context = new AudioContext(); // the server resamples whatever rate this gives
  }
  await context.audioWorklet.addModule(new URL("worklet.js", import.meta.url));
  return new AudioWorkletNode(context, "pcm-sender");
}

// How audio goes: `format` for the start message; `go(socket)` starts sending it as it is recorded.
async function sender() {
  const type = opusType();
  if (type) {
    recorder = new MediaRecorder(media, { mimeType: type, audioBitsPerSecond: OPUS_BITS_PER_S });
    const go = (open) => {
      recorder.ondataavailable = (data) => {
        sending = sending.then(() => data.data.arrayBuffer()).then((piece) => {
          if (piece.byteLength && open.readyState === WebSocket.OPEN) open.send(piece);
        });
      };
      recorder.start(OPUS_SLICE_MS);
    };
    return { format: { sample_format: "opus" }, go };
  }
  const worklet = await openWorklet();
  const go = (open) => {
    worklet.port.onmessage = (message) => { if (open.readyState === WebSocket.OPEN) open.send(message.data); };
    context.createMediaStreamSource(media).connect(worklet);
  };
  return { format: { sample_rate: context.sampleRate, sample_format: "s16le" }, go };
}

// `model`: what the start message names (a published session's model is the session's own).
export async function start(path = "/v1/stream", model = chosenModel()) {
  $("start").disabled = $("publish").disabled = true;
  try {
    await openMicrophone();
    const { format, go } = await sender();
    let started = false;
    const handlers = {
      ...captionHandlers,
      ready(event) { // audio goes once the stream has its place (a busy server answers `queued` first)
        captionHandlers.ready(event);
        if (started) return;
        started = true;
        go(socket);
      },
    };
    socket = connect(path, handlers, {
      onOpen(open) {
        const begin = { type: "start", ...format };
        open.send(JSON.stringify(model ? { ...begin, model } : begin));
        $("stop").disabled = false;
      },
      onClose(close) {
        if (close.code !== CLOSE.NORMAL) setState(`closed (${close.code}): ${close.reason}`, true);
        else setState("stopped");
        cleanUp();
      },
    });
  } catch (error) {
    setState(`cannot start: ${error.message}`, true);
    cleanUp();
  }
}

export function stop() {
  $("stop").disabled = true;
  const end = () => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "end" })); };
  if (recorder && recorder.state !== "inactive") {
    recorder.onstop = () => sending.then(end); // after its last piece
    recorder.stop();
  } else end();
  setState("finishing");
  if (media) media.getTracks().forEach((track) => track.stop());
}

function cleanUp() {
  if (recorder && recorder.state !== "inactive") recorder.stop();
  if (media) media.getTracks().forEach((track) => track.stop());
  if (context) context.close();
  media = context = recorder = null;
  $("start").disabled = $("publish").disabled = false;
  $("stop").disabled = true;
}

// A shared session fed by this microphone; its viewer link is shown for others.
export async function publish(onPublished = () => {}) {
  try {
    const session = await api("POST", "/v1/sessions", { source: "publish", model: chosenModel() });
    $("watch-link").href = pageUrl({ watch: session.id });
    $("watch-link").textContent = new URL($("watch-link").href, location.href).href;
    $("published").hidden = false;
    $("published").dataset.session = session.id;
    await start(`/v1/sessions/${session.id}/publish`, null);
    onPublished();
  } catch (error) {
    setState(`cannot publish: ${error.message}`, true);
  }
}
