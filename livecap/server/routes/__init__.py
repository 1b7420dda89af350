"""The HTTP and WebSocket routes, one `APIRouter` per resource. Routes parse what arrives (bodies,
forms, path parameters) and hand plain values to the server's objects, which live on
`app.state`: the hub (`hub_of`), the sessions and the media library."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from livecap.server.hub import Hub
from livecap.server.media import MediaLibrary
from livecap.server.sessions import Sessions


def hub_of(connection: HTTPConnection) -> Hub:
    """The server's hub (a request's or a WebSocket's)."""
    return connection.app.state.hub


def sessions_of(connection: HTTPConnection) -> Sessions:
    """The server's shared sessions."""
    return connection.app.state.sessions


def library_of(connection: HTTPConnection) -> MediaLibrary:
    """The server's media library."""
    return connection.app.state.sessions.library
