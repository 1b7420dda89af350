"""GET /health, /ready, /status, /metrics and /v1/models: what the server is and how it is doing."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response

from livecap.asr.models import local_models
from livecap.asr.registry import ModelRecord, ModelRegistry
from livecap.server.routes import hub_of, sessions_of

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    hub = hub_of(request)
    draining = hub.draining.is_set()
    return JSONResponse(
        {"status": "draining" if draining else "ok", "model": hub.model},
        status_code=503 if draining else 200,
    )


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """For a load balancer's health check: not ready while draining, or at capacity with a full
    waiting list (a newcomer would be refused)."""
    hub = hub_of(request)
    state = (
        "draining"
        if hub.draining.is_set()
        else "at capacity"
        if hub.streams_line.full()
        else "ready"
    )
    return JSONResponse({"status": state}, status_code=200 if state == "ready" else 503)


@router.get("/status")
async def status(request: Request) -> dict:
    return {**hub_of(request).status_report(), **sessions_of(request).status_report()}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(hub_of(request).registry), media_type=CONTENT_TYPE_LATEST)


def model_listing(models: ModelRegistry) -> list[dict]:
    """GET /v1/models: the models available offline and those this server knows (its own, and the
    ones clients loaded), each with its state, figures and memory while loaded."""
    records = {r.name: r for r in models.records()}
    catalog = {m.name: m for m in local_models()}
    listed = []
    for name in dict.fromkeys([*records, *catalog]):
        entry = catalog.get(name)
        figures = (records.get(name) or ModelRecord(name)).describe()
        multilingual = figures.get("multilingual")
        listed.append(
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "livecap",
                **figures,
                "multilingual": entry.multilingual
                if multilingual is None and entry is not None
                else multilingual,
                "available_offline": (entry.path is not None)
                if entry is not None
                else figures["loaded"],
            }
        )
    return listed


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    return {
        "object": "list",
        "data": await asyncio.to_thread(model_listing, hub_of(request).models),
    }
