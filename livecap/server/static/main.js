// The page: `?watch=ID` is the viewer mode; otherwise the microphone (alone or published as a
// session), the shared sessions and the upload form, each in its own module.
import { watchedSession } from "./protocol.js";
import { $, setState } from "./captions.js";
import { refreshModels } from "./models.js";
import { publish, start, stop } from "./publisher.js";
import { refreshSessions, setUp as setUpSessions } from "./sessions.js";
import { setUp as setUpUploader } from "./uploader.js";
import { watch } from "./viewer.js";

if (watchedSession) {
  watch(watchedSession);
} else {
  $("start").onclick = () => start();
  $("publish").onclick = () => publish(refreshSessions);
  $("stop").onclick = stop;
  setUpSessions();
  setUpUploader();
  refreshModels().catch((error) => setState(`cannot list the models: ${error.message}`, true));
  $("model").onfocus = () => refreshModels().catch(() => {}); // loaded or not: fresh when opened
}
