// The viewer mode (`?watch=ID`): one session's captions, large; a viewer cut off for falling
// behind (CLOSE.REJOIN) rejoins and gets the history again.
import { CLOSE, connect } from "./protocol.js";
import { captionHandlers, setState } from "./captions.js";

const REJOIN_AFTER_MS = 2000;

export function watch(id) {
  document.body.classList.add("viewer");
  document.title = "livecap captions";
  setState("connecting");
  connect(`/v1/sessions/${encodeURIComponent(id)}/captions`, captionHandlers, {
    onClose(close) {
      if (close.code === CLOSE.NORMAL) return; // the end event said why
      setState(`closed (${close.code}): ${close.reason}`, true);
      if (close.code === CLOSE.REJOIN) setTimeout(() => location.reload(), REJOIN_AFTER_MS);
    },
  });
}
