// What the page shows of a stream or a session: the state line, final captions, the interim line
// and latency. `captionHandlers` is the handler table for the live events (see protocol.js).
export const $ = (id) => document.getElementById(id);
const MAX_LINES = 200; // captions kept on the page (a long event must not grow it without end)

export function setState(text, isError = false) {
  $("state").textContent = text;
  $("state").className = isError ? "error" : "";
}

export function textSpan(text) {
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text.trim();
  return span;
}

function timeSpan(text) {
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = text;
  return time;
}

export function timedLine(time, text) {
  const line = document.createElement("p");
  line.append(timeSpan(time), textSpan(text));
  return line;
}

let interimUtterance = null; // the utterance the interim line previews

// A final clears the interim line unless it already previews a later utterance.
function clearInterim(utterance = Infinity) {
  if (interimUtterance !== null && interimUtterance > utterance) return;
  $("committed").textContent = "";
  $("tail").textContent = "";
  interimUtterance = null;
}

// A speaker label ("S2"), coloured by its number; `speaker` events may change it later.
function setSpeaker(line, speaker) {
  let label = line.querySelector(".speaker");
  if (!label) {
    label = document.createElement("span");
    line.insertBefore(label, line.querySelector(".text"));
  }
  label.textContent = `${speaker}: `;
  label.className = `speaker s${(Number(speaker.slice(1)) - 1) % 6}`;
}

function addCaption(event) {
  const line = timedLine(`${event.start.toFixed(1)}s`, event.text);
  line.dataset.start = event.start;
  line.dataset.seq = event.seq;
  if (event.speaker) setSpeaker(line, event.speaker);
  if (event.latency) {
    const lat = document.createElement("span");
    lat.className = "meta";
    lat.textContent = ` (${event.latency.latency.toFixed(2)} s)`;
    line.append(lat);
  }
  $("captions").append(line);
  while ($("captions").childElementCount > MAX_LINES) $("captions").firstElementChild.remove();
  if (document.body.classList.contains("viewer")) line.scrollIntoView({ block: "end" });
  clearInterim(event.utterance);
}

// 1st, 2nd, 3rd, 4th ... 11th, 12th, 13th, 21st
export function ordinal(n) {
  const suffix = n % 100 >= 10 && n % 100 <= 20 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
  return `${n}${suffix}`;
}

export const captionHandlers = {
  loading(event) {
    if (event.state === "waiting") setState(`waiting for a free model slot for ${event.model}`);
    else setState(`loading model ${event.model}...`);
  },
  queued(event) {
    const eta = event.eta_s ? ` (about ${Math.round(event.eta_s)} s)` : "";
    setState(`waiting: ${ordinal(event.position)} in line${eta}`);
  },
  ready(event) {
    clearInterim(); // a new stream numbers its utterances from 0
    if (event.session) setState(`watching session ${event.session.id} (${event.session.state})`);
    else setState(`listening (${event.model}, stream ${event.stream_id}, ${event.sample_format})`);
  },
  end(event) {
    setState(`session ended: ${event.reason}`);
    clearInterim();
  },
  final(event) {
    addCaption(event);
    if (event.latency) $("latency").textContent = `final latency ${event.latency.latency.toFixed(2)} s`;
  },
  speaker(event) {
    for (const { seq, speaker } of event.labels) {
      const line = $("captions").querySelector(`p[data-seq="${seq}"]`);
      if (line) setSpeaker(line, speaker);
    }
  },
  interim(event) {
    interimUtterance = event.utterance;
    $("committed").textContent = event.committed;
    $("tail").textContent = event.tail;
    $("interim-latency").textContent = `interim ${event.latency.toFixed(2)} s`;
  },
  stats(event) {
    if (event.final_p50 == null) return;
    $("latency").textContent = `final latency p50 ${event.final_p50.toFixed(2)} s, p95 ${event.final_p95.toFixed(2)} s`;
  },
  error(event) {
    setState(event.message, true);
  },
};
