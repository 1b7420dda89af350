"""GET / (the page, its style inlined) and GET /static/NAME (its ES modules, read once)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

from livecap.server.auth import SCRIPTS


def page() -> str:
    """The browser page with its style inlined; its scripts are ES modules under /static/."""
    static = resources.files("livecap.server") / "static"
    html = (static / "index.html").read_text(encoding="utf-8")
    return html.replace("{{style.css}}", (static / "style.css").read_text(encoding="utf-8"))


def scripts() -> dict[str, str]:
    """The page's modules by file name: a request names one of these, never a path."""
    static = resources.files("livecap.server") / "static"
    return {
        item.name: item.read_text(encoding="utf-8")
        for item in static.iterdir()
        if item.name.endswith(".js")
    }


def page_router() -> APIRouter:
    """The page and its scripts, read when the app is built."""
    router = APIRouter()
    html, modules = page(), scripts()

    @router.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(html)

    @router.get(SCRIPTS + "{name}")
    async def script(name: str) -> Response:
        if name not in modules:
            raise HTTPException(404, "no such page script")
        return Response(modules[name], media_type="text/javascript")

    return router
