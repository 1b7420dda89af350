// The model picker: every model the server offers (GET /v1/models), the loaded ones first; the
// microphone, a published session, a session from the media library and an upload all use the
// chosen one. A model not loaded yet is loaded on first use (a `loading` event says so).
import { api } from "./protocol.js";
import { $ } from "./captions.js";

function label(model) {
  const kind = model.multilingual === false ? "English only" : model.multilingual ? "multilingual" : "";
  const state = model.loaded ? "loaded" : model.available_offline ? "loads on use" : "downloads on use";
  return `${model.id} (${[kind, state].filter(Boolean).join(", ")})`;
}

export async function refreshModels() {
  const models = (await api("GET", "/v1/models")).data;
  const chosen = $("model").value;
  const ordered = [...models.filter((m) => m.pinned), ...models.filter((m) => !m.pinned)];
  $("model").replaceChildren(...ordered.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = label(m);
    return option;
  }));
  if (chosen && models.some((m) => m.id === chosen)) $("model").value = chosen;
}

// The chosen model's id (the server's default until the list has come).
export function chosenModel() {
  return $("model").value || "whisper-1";
}
