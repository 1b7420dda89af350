// The "Transcribe a file" form: an OpenAI-style upload, its segments shown with their times; any
// failure (the server's reason, or a network error) replaces "transcribing...".
import { api } from "./protocol.js";
import { $, timedLine } from "./captions.js";
import { chosenModel, refreshModels } from "./models.js";

async function upload(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("file", $("file").files[0]);
  form.append("model", chosenModel());
  form.append("response_format", "verbose_json");
  const out = $("upload-result");
  out.className = "";
  out.textContent = `transcribing with ${chosenModel()}...`;
  try {
    const body = await api("POST", "/v1/audio/transcriptions", form);
    out.replaceChildren(...body.segments.map((s) => timedLine(`${s.start.toFixed(1)}-${s.end.toFixed(1)}s`, s.text)));
    out.dataset.language = body.language || "";
    refreshModels().catch(() => {}); // the model it named is loaded now
  } catch (error) {
    out.className = "error";
    out.textContent = error.message;
  }
}

export function setUp() {
  $("upload-form").onsubmit = upload;
}
