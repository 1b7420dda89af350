// Shared sessions on the main page: the list (refreshed), the media library and starting a
// session from one of its files.
import { api, pageUrl } from "./protocol.js";
import { $ } from "./captions.js";
import { chosenModel } from "./models.js";

const REFRESH_MS = 2000;

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
}

function sessionRow(s) {
  const row = document.createElement("tr");
  row.dataset.session = s.id;
  const link = document.createElement("a");
  link.href = pageUrl({ watch: s.id });
  link.textContent = s.id;
  cell(row, link);
  cell(row, s.state + (s.end_reason ? `: ${s.end_reason}` : ""));
  cell(row, (s.source === "media" ? `media ${s.media}` : "publisher") + `, ${s.model}`);
  cell(row, String(s.viewers));
  cell(row, `${s.position.toFixed(0)} s` + (s.duration ? ` / ${s.duration.toFixed(0)} s` : ""));
  cell(row, s.final_latency_p50 == null ? "" : `${s.final_latency_p50.toFixed(2)} s`);
  if (s.state !== "ended") {
    const stopButton = document.createElement("button");
    stopButton.textContent = "Stop";
    stopButton.onclick = () => api("DELETE", `/v1/sessions/${s.id}`).then(refreshSessions, showError);
    cell(row, stopButton);
  } else cell(row, "");
  return row;
}

export async function refreshSessions() {
  try {
    const sessions = (await api("GET", "/v1/sessions")).data;
    $("session-list").replaceChildren(...sessions.map(sessionRow));
  } catch (error) {
    showError(error);
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

function say(text) {
  $("sessions-message").className = "";
  $("sessions-message").textContent = text;
}

function showError(error) {
  $("sessions-message").className = "error";
  $("sessions-message").textContent = error.message;
}

async function addMedia(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("file", $("media-file").files[0]);
  say("uploading...");
  try {
    const item = await api("POST", "/v1/media", form);
    say(`added ${item.name}`);
    await refreshMedia();
    $("media-list").value = item.id;
  } catch (error) {
    showError(error);
  }
}

async function startFromMedia(event) {
  event.preventDefault();
  try {
    const session = await api("POST", "/v1/sessions", { media: $("media-list").value, model: chosenModel() });
    say(`session ${session.id} started`);
    await refreshSessions();
  } catch (error) {
    showError(error);
  }
}

export function setUp() {
  $("media-upload-form").onsubmit = addMedia;
  $("media-form").onsubmit = startFromMedia;
  refreshMedia().catch(showError);
  refreshSessions();
  setInterval(refreshSessions, REFRESH_MS);
}
