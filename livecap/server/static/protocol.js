// The server's protocol as the page speaks it: the API key, HTTP calls, WebSocket URLs, close codes
// (livecap/closecodes.py names the same numbers) and one handler table keyed by event type.
export const CLOSE = Object.freeze({
  NORMAL: 1000, // the stream or session ended as asked (an `end` event said why)
  POLICY: 1008, // wrong key, idle, over a limit
  TRY_LATER: 1013, // at capacity
  REJOIN: 4001, // a viewer fell too far behind: rejoin to catch up
  NO_SESSION: 4404,
  NO_MODEL: 4405,
});

const params = new URLSearchParams(location.search);
export const apiKey = params.get("api_key");
export const watchedSession = params.get("watch");

function authHeaders(extra = {}) {
  return apiKey ? { ...extra, Authorization: `Bearer ${apiKey}` } : extra;
}

export function pageUrl(query) {
  const all = new URLSearchParams(query);
  if (apiKey) all.set("api_key", apiKey);
  return `${location.pathname}?${all}`;
}

// An HTTP call: the answer's JSON, or an Error whose message says why (the server's reason, the
// status, or that the server could not be reached).
export async function api(method, path, body) {
  const init = { method, headers: authHeaders() };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = authHeaders({ "Content-Type": "application/json" });
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new Error(`cannot reach the server (${error.message})`);
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(answer && answer.error ? answer.error.message : `HTTP ${response.status} ${response.statusText}`);
  }
  if (answer === null) throw new Error(`HTTP ${response.status}: the answer is not JSON`);
  return answer;
}

// A WebSocket to `path` whose events go to `handlers[event.type]` (types without a handler are
// ignored); `onOpen(socket)` and `onClose(close)` as given.
export function connect(path, handlers, { onOpen = () => {}, onClose = () => {} } = {}) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = apiKey ? `?api_key=${encodeURIComponent(apiKey)}` : "";
  const socket = new WebSocket(`${scheme}://${location.host}${path}${query}`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => onOpen(socket);
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const handle = handlers[event.type];
    if (handle) handle(event);
  };
  socket.onclose = onClose;
  return socket;
}
