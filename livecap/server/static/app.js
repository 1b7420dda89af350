// The page: microphone -> AudioWorklet (s16le PCM) -> WebSocket /v1/stream -> captions; and file uploads.
"use strict";
const apiKey = new URLSearchParams(location.search).get("api_key");
const $ = (id) => document.getElementById(id);
let socket = null, context = null, media = null;

function setState(text, isError = false) {
  $("state").textContent = text;
  $("state").className = isError ? "error" : "";
}

function textSpan(text) {
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text.trim();
  return span;
}

function addCaption(event) {
  const line = document.createElement("p");
  line.dataset.start = event.start;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${event.start.toFixed(1)}s`;
  line.append(time, textSpan(event.text));
  if (event.latency) {
    const lat = document.createElement("span");
    lat.className = "meta";
    lat.textContent = ` (${event.latency.latency.toFixed(2)} s)`;
    line.append(lat);
  }
  $("captions").append(line);
  $("committed").textContent = "";
  $("tail").textContent = "";
}

function onEvent(event) {
  if (event.type === "ready") {
    setState(`listening (${event.model}, stream ${event.stream_id})`);
  } else if (event.type === "final") {
    addCaption(event);
    if (event.latency) $("latency").textContent = `final latency ${event.latency.latency.toFixed(2)} s`;
  } else if (event.type === "interim") {
    $("committed").textContent = event.committed;
    $("tail").textContent = event.tail;
    $("interim-latency").textContent = `interim ${event.latency.toFixed(2)} s`;
  } else if (event.type === "stats" && event.final_p50 != null) {
    $("latency").textContent = `final latency p50 ${event.final_p50.toFixed(2)} s, p95 ${event.final_p95.toFixed(2)} s`;
  } else if (event.type === "error") {
    setState(event.message, true);
  }
}

async function start() {
  $("start").disabled = true;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    try {
      context = new AudioContext({ sampleRate: 16000 });
    } catch (e) {
      context = new AudioContext(); // the server resamples whatever rate this gives
    }
    const source = new Blob([$("worklet-source").textContent], { type: "application/javascript" });
    await context.audioWorklet.addModule(URL.createObjectURL(source));
    const sender = new AudioWorkletNode(context, "pcm-sender");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = apiKey ? `?api_key=${encodeURIComponent(apiKey)}` : "";
    socket = new WebSocket(`${scheme}://${location.host}/v1/stream${query}`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "start", sample_rate: context.sampleRate, sample_format: "s16le" }));
      sender.port.onmessage = (message) => { if (socket.readyState === WebSocket.OPEN) socket.send(message.data); };
      context.createMediaStreamSource(media).connect(sender);
      $("stop").disabled = false;
    };
    socket.onmessage = (message) => onEvent(JSON.parse(message.data));
    socket.onclose = (close) => {
      if (close.code !== 1000) setState(`closed (${close.code}): ${close.reason}`, true);
      else setState("stopped");
      cleanUp();
    };
  } catch (error) {
    setState(`cannot start: ${error.message}`, true);
    cleanUp();
  }
}

function stop() {
  $("stop").disabled = true;
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "end" }));
  setState("finishing");
  if (media) media.getTracks().forEach((track) => track.stop());
}

function cleanUp() {
  if (media) media.getTracks().forEach((track) => track.stop());
  if (context) context.close();
  media = context = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

async function upload(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("file", $("file").files[0]);
  form.append("model", "whisper-1");
  form.append("response_format", "verbose_json");
  const out = $("upload-result");
  out.textContent = "transcribing...";
  const response = await fetch("/v1/audio/transcriptions", {
    method: "POST", body: form, headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
  });
  const body = await response.json();
  out.textContent = "";
  if (!response.ok) {
    out.className = "error";
    out.textContent = body.error.message;
    return;
  }
  out.className = "";
  for (const segment of body.segments) {
    const line = document.createElement("p");
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${segment.start.toFixed(1)}-${segment.end.toFixed(1)}s`;
    line.append(time, textSpan(segment.text));
    out.append(line);
  }
}

$("start").onclick = start;
$("stop").onclick = stop;
$("upload-form").onsubmit = upload;
