"""/v1/media: the media library (add a file, list, delete)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request

from livecap.server.routes import library_of, sessions_of
from livecap.server.uploads import read_form

router = APIRouter()


@router.post("/v1/media", status_code=201)
async def add_media(request: Request) -> dict:
    library = library_of(request)
    await library.refresh()  # the count of files is the service's
    with library.reserve():  # refused before the body is read when the library is full or busy
        upload, _ = await read_form(request, library.max_bytes)
        try:
            item = await library.add(upload.filename, upload.file)
        finally:
            await upload.close()
    return asdict(item)


@router.get("/v1/media")
async def list_media(request: Request) -> dict:
    return {"object": "list", "data": await library_of(request).listing()}


@router.delete("/v1/media/{media_id}")
async def delete_media(request: Request, media_id: str) -> dict:
    await sessions_of(request).delete_media(media_id)
    return {"id": media_id, "deleted": True}
