// The page: microphone -> AudioWorklet (s16le PCM) -> WebSocket /v1/stream (or a session's publish
// socket) -> captions; shared sessions (list, start from the media library, watch); file uploads.
// `?watch=ID` is the viewer mode: that session's captions, large.
"use strict";
const params = new URLSearchParams(location.search);
const apiKey = params.get("api_key");
const $ = (id) => document.getElementById(id);
const MAX_LINES = 200; // captions kept on the page (a long event must not grow it without end)
let socket = null, context = null, media = null;

function authHeaders(extra = {}) {
  return apiKey ? { ...extra, Authorization: `Bearer ${apiKey}` } : extra;
}

function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}${apiKey ? `?api_key=${encodeURIComponent(apiKey)}` : ""}`;
}

function pageUrl(query) {
  const all = new URLSearchParams(query);
  if (apiKey) all.set("api_key", apiKey);
  return `${location.pathname}?${all}`;
}

async function api(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = authHeaders({ "Content-Type": "application/json" });
  }
  const response = await fetch(path, init);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error ? answer.error.message : response.statusText);
  return answer;
}

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
  while ($("captions").childElementCount > MAX_LINES) $("captions").firstElementChild.remove();
  if (document.body.classList.contains("viewer")) line.scrollIntoView({ block: "end" });
  $("committed").textContent = "";
  $("tail").textContent = "";
}

function onEvent(event) {
  if (event.type === "ready" && event.session) {
    setState(`watching session ${event.session.id} (${event.session.state})`);
  } else if (event.type === "ready") {
    setState(`listening (${event.model}, stream ${event.stream_id})`);
  } else if (event.type === "end") {
    setState(`session ended: ${event.reason}`);
    $("committed").textContent = "";
    $("tail").textContent = "";
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

async function start(path = "/v1/stream") {
  $("start").disabled = $("publish").disabled = true;
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
    socket = new WebSocket(socketUrl(path));
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
  $("start").disabled = $("publish").disabled = false;
  $("stop").disabled = true;
}

async function publish() {
  try {
    const session = await api("POST", "/v1/sessions", { source: "publish" });
    $("watch-link").href = pageUrl({ watch: session.id });
    $("watch-link").textContent = new URL($("watch-link").href, location.href).href;
    $("published").hidden = false;
    $("published").dataset.session = session.id;
    await start(`/v1/sessions/${session.id}/publish`);
    refreshSessions();
  } catch (error) {
    setState(`cannot publish: ${error.message}`, true);
  }
}

function watch(id) {
  document.body.classList.add("viewer");
  document.title = "livecap captions";
  setState("connecting");
  socket = new WebSocket(socketUrl(`/v1/sessions/${encodeURIComponent(id)}/captions`));
  socket.onmessage = (message) => onEvent(JSON.parse(message.data));
  socket.onclose = (close) => {
    if (close.code === 1000) return; // the end event said why
    setState(`closed (${close.code}): ${close.reason}`, true);
    if (close.code === 1008 && close.reason.startsWith("viewer too far behind")) setTimeout(() => location.reload(), 2000);
  };
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
}

async function refreshSessions() {
  try {
    const sessions = (await api("GET", "/v1/sessions")).data;
    const rows = sessions.map((s) => {
      const row = document.createElement("tr");
      row.dataset.session = s.id;
      const link = document.createElement("a");
      link.href = pageUrl({ watch: s.id });
      link.textContent = s.id;
      cell(row, link);
      cell(row, s.state + (s.end_reason ? `: ${s.end_reason}` : ""));
      cell(row, s.source === "media" ? `media ${s.media}` : "publisher");
      cell(row, String(s.viewers));
      cell(row, `${s.position.toFixed(0)} s` + (s.duration ? ` / ${s.duration.toFixed(0)} s` : ""));
      cell(row, s.final_latency_p50 == null ? "" : `${s.final_latency_p50.toFixed(2)} s`);
      if (s.state !== "ended") {
        const stopButton = document.createElement("button");
        stopButton.textContent = "Stop";
        stopButton.onclick = () => api("DELETE", `/v1/sessions/${s.id}`).then(refreshSessions, showSessionError);
        cell(row, stopButton);
      } else cell(row, "");
      return row;
    });
    $("session-list").replaceChildren(...rows);
  } catch (error) {
    showSessionError(error);
  }
}

async function refreshMedia() {
  const items = (await api("GET", "/v1/media")).data;
  $("media-list").replaceChildren(...items.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = `${m.name} (${m.duration == null ? "?" : m.duration.toFixed(0)} s, ${m.format})`;
    return option;
  }));
}

function showSessionError(error) {
  $("sessions-message").className = "error";
  $("sessions-message").textContent = error.message;
}

async function addMedia(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("file", $("media-file").files[0]);
  $("sessions-message").className = "";
  $("sessions-message").textContent = "uploading...";
  try {
    const item = await api("POST", "/v1/media", form);
    $("sessions-message").textContent = `added ${item.name}`;
    await refreshMedia();
    $("media-list").value = item.id;
  } catch (error) {
    showSessionError(error);
  }
}

async function startFromMedia(event) {
  event.preventDefault();
  try {
    const session = await api("POST", "/v1/sessions", { media: $("media-list").value });
    $("sessions-message").className = "";
    $("sessions-message").textContent = `session ${session.id} started`;
    await refreshSessions();
  } catch (error) {
    showSessionError(error);
  }
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
    method: "POST", body: form, headers: authHeaders(),
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

if (params.get("watch")) {
  watch(params.get("watch"));
} else {
  $("start").onclick = () => start();
  $("publish").onclick = publish;
  $("stop").onclick = stop;
  $("upload-form").onsubmit = upload;
  $("media-upload-form").onsubmit = addMedia;
  $("media-form").onsubmit = startFromMedia;
  refreshMedia().catch(showSessionError);
  refreshSessions();
  setInterval(refreshSessions, 2000);
}
