"""WebSocket close codes of the live protocol, named once for the server, `livecap watch` and the
client (the page's `static/protocol.js` mirrors them). 1000-1015 are RFC 6455's; 4000-4999 are
the application's own."""

from __future__ import annotations

NORMAL = 1000  # the stream or session ended as asked
GOING_AWAY = 1001  # the server is shutting down
UNSUPPORTED = 1003  # an unsupported sample format or rate, or audio before the start message
ABNORMAL = 1006  # the client vanished (never sent: what the server records)
INVALID = 1007  # malformed input
POLICY = 1008  # wrong key, idle, over a limit, reading too slowly
TOO_BIG = 1009  # a message over the size limit
INTERNAL = 1011  # a server error
TRY_LATER = 1013  # at capacity
REJOIN = 4001  # a viewer fell too far behind: rejoin to catch up (the history comes again)
NO_SESSION = 4404  # no such session
NO_MODEL = 4405  # no such model on this server (the reason names the available ones)
