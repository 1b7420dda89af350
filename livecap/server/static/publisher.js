// The microphone: getUserMedia -> AudioWorklet (s16le PCM) -> a live stream (/v1/stream) or a
// session's publish socket, its events shown as captions.
import { CLOSE, api, connect, pageUrl } from "./protocol.js";
import { $, captionHandlers, setState } from "./captions.js";
import { chosenModel } from "./models.js";

let socket = null, context = null, media = null;

async function openMicrophone() {
  media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  try {
    context = new AudioContext({ sampleRate: 16000 });
  } catch (e) {
    context = new AudioContext(); // the server resamples whatever rate this gives
  }
  await context.audioWorklet.addModule(new URL("worklet.js", import.meta.url));
  return new AudioWorkletNode(context, "pcm-sender");
}

// `model`: what the start message names (a published session's model is the session's own).
export async function start(path = "/v1/stream", model = chosenModel()) {
  $("start").disabled = $("publish").disabled = true;
  try {
    const sender = await openMicrophone();
    let sending = false;
    const handlers = {
      ...captionHandlers,
      ready(event) { // audio goes once the stream has its place (a busy server answers `queued` first)
        captionHandlers.ready(event);
        if (sending) return;
        sending = true;
        sender.port.onmessage = (message) => { if (socket.readyState === WebSocket.OPEN) socket.send(message.data); };
        context.createMediaStreamSource(media).connect(sender);
      },
    };
    socket = connect(path, handlers, {
      onOpen(open) {
        const begin = { type: "start", sample_rate: context.sampleRate, sample_format: "s16le" };
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
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "end" }));
  setState("finishing");
  if (media) media.getTracks().forEach((track) => track.stop());
}

function cleanUp() {
  if (media) media.getTracks().forEach((track) => track.stop());
  if (context) context.close();
  media = context = null;
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
