"""Models on demand in a real `livecap serve` process (real tiny.en and base, real speech, real
clients): a model named by a request is loaded, used beside the default one, kept while in use,
unloaded when idle past `--model-ttl-s` (and the process's RSS falls), evicted least recently used
first under `--max-models`, and unknown or broken models are refused with their reason."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from conftest import Clip, hub_repo, run_cli
from livecap.bench.streams import serve_process
from livecap.bench.wer import wer
from livecap.closecodes import INTERNAL, NO_MODEL
from livecap.server.client import pcm_frames, stream_file
from test_browser import chromium, fake_microphone, first_pass_captions  # noqa: F401 - a fixture
from test_server import by_length, collect, ws_url

pytestmark = pytest.mark.slow

# tiny.en laid out in a Hugging Face cache: a third model
HUB_COPY = "Systran/faster-whisper-tiny.en"
BROKEN = "livecap-test/broken-whisper"
FOREIGN_WER = 0.45  # base on a short German or Spanish sentence: a word or two of ten may differ


@pytest.fixture
def hub_cache(tmp_path: Path) -> dict[str, str]:
    cache = tmp_path / "hub"
    hub_repo(cache, HUB_COPY)
    hub_repo(cache, BROKEN, damaged=True)
    return {"HF_HUB_CACHE": str(cache)}


def models_now(base: str) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in httpx.get(base + "/v1/models").json()["data"]}


def until(condition: Any, deadline_s: float = 120.0) -> None:
    """Poll `condition()` until true, within a generous deadline (an unload is the reaper's)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.1)


def upload(base: str, clip: Clip, **fields: str) -> httpx.Response:
    with clip.path.open("rb") as audio:
        return httpx.post(
            base + "/v1/audio/transcriptions",
            files={"file": (clip.path.name, audio)},
            data={"response_format": "verbose_json", **fields},
            timeout=300,
        )


def foreign(non_en_clips: list[Clip]) -> Clip:
    return next(c for c in non_en_clips if c.language in ("de", "es"))


async def first_events(ws: websockets.ClientConnection, until_type: str) -> list[dict]:
    """Events up to and with the first of `until_type`."""
    events = []
    while not events or events[-1]["type"] != until_type:
        events.append(json.loads(await ws.recv()))
    return events


async def send_clip_and_end(ws: websockets.ClientConnection, clip: Clip) -> list[dict]:
    """The clip as fast as taken, the end, and every event until the close."""
    for frame in pcm_frames(clip.path):
        await ws.send(frame)
    await ws.send(json.dumps({"type": "end"}))
    return await collect(ws)


def text_of(events: list[dict]) -> str:
    return " ".join(e["text"] for e in events if e["type"] == "final")


def test_upload_on_base_beside_a_tiny_en_stream_then_base_is_kept_while_used_and_unloaded_when_idle(
    en_clips: list[Clip], non_en_clips: list[Clip]
) -> None:
    english, other = by_length(en_clips, 1)[0], foreign(non_en_clips)
    with serve_process(["--model-ttl-s", "1"]) as (base, process, _):
        assert models_now(base)["base"]["loaded"] is False

        async def both() -> tuple[Any, httpx.Response]:
            return await asyncio.gather(stream_file(ws_url(base), english.path, speed=1.0),
                                        asyncio.to_thread(upload, base, other, model="base"))

        live, uploaded = asyncio.run(both())
        assert live.close_code == 1000 and live.events[0]["model"] == "tiny.en"
        assert wer(english.reference, live.text) < 0.35, live.text
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["language"] == other.language
        assert wer(other.reference, uploaded.json()["text"]) < FOREIGN_WER, uploaded.json()["text"]
        figures = httpx.get(base + "/status").json()["models"]
        assert figures["base"]["loads"] == 1 and figures["base"]["uploads_total"] == 1
        assert figures["tiny.en"]["streams_total"] == 1 and figures["tiny.en"]["pinned"]

        async def held_past_its_ttl() -> tuple[dict, int, list[dict]]:
            async with websockets.connect(ws_url(base)) as ws:
                await ws.send(json.dumps({"type": "start", "model": "base"}))
                await first_events(ws, "ready")  # a `loading` first if its TTL had already passed
                listed = await asyncio.to_thread(models_now, base)
                await asyncio.sleep(3.0)  # three TTLs with a lease held: it must stay
                assert (await asyncio.to_thread(models_now, base))["base"]["loaded"], (
                    "unloaded while in use"
                )
                events = await send_clip_and_end(ws, other)
                return listed["base"], process.memory_info().rss, events

        listed, rss_in_use, events = asyncio.run(held_past_its_ttl())
        assert listed["loaded"] and listed["memory_bytes"] > 0
        assert listed["multilingual"] and listed["available_offline"]
        assert wer(other.reference, text_of(events)) < FOREIGN_WER
        assert {e["language"] for e in events if e["type"] == "final"} == {other.language}
        until(lambda: not models_now(base)["base"]["loaded"])
        # CTranslate2's weights freed and the heap trimmed
        assert process.memory_info().rss < rss_in_use
        figures = httpx.get(base + "/status").json()["models"]
        assert figures["base"]["unloads"] >= 1 and figures["tiny.en"]["loaded"]  # the default stays
        metrics = httpx.get(base + "/metrics").text
        assert 'livecap_model_loaded{model="base"} 0.0' in metrics
        assert 'livecap_model_loads_total{model="base"}' in metrics


def test_two_streams_on_different_models_at_once_keep_their_own_captions(
    en_clips: list[Clip], non_en_clips: list[Clip]
) -> None:
    english, other = by_length(en_clips, 1)[0], foreign(non_en_clips)
    with serve_process([]) as (base, _, _):

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(
                    stream_file(ws_url(base), english.path, speed=1.0),
                    stream_file(ws_url(base), other.path, speed=1.0, start={"model": "base"}),
                )
            )

        on_tiny, on_base = asyncio.run(both())
    assert [e["type"] for e in on_base.events[:2]] == ["loading", "ready"]
    assert on_tiny.events[0]["model"] == "tiny.en" and on_base.events[1]["model"] == "base"
    assert on_tiny.events[0]["stream_id"] != on_base.events[1]["stream_id"]
    assert on_tiny.close_code == on_base.close_code == 1000
    assert wer(english.reference, on_tiny.text) < 0.35, on_tiny.text
    assert wer(other.reference, on_base.text) < FOREIGN_WER, on_base.text
    assert {f["language"] for f in on_base.finals} == {other.language}


def test_max_models_1_makes_a_load_wait_for_the_slot_and_evicts_the_idle_model(
    hub_cache: dict[str, str], en_clips: list[Clip], non_en_clips: list[Clip]
) -> None:
    english, other = by_length(en_clips, 1)[0], foreign(non_en_clips)
    with serve_process(["--max-models", "1", "--model-ttl-s", "-1"], hub_cache) as (base, _, _):

        async def scenario() -> tuple[list[dict], list[dict], list[dict]]:
            async with (
                websockets.connect(ws_url(base)) as on_base,
                websockets.connect(ws_url(base)) as on_copy,
            ):
                await on_base.send(json.dumps({"type": "start", "model": "base"}))
                assert [e["type"] for e in await first_events(on_base, "ready")] == [
                    "loading",
                    "ready",
                ]
                await on_copy.send(json.dumps({"type": "start", "model": HUB_COPY}))
                # the one slot is base's, in use: it waits
                waiting = json.loads(await on_copy.recv())
                assert waiting == {"type": "loading", "model": HUB_COPY, "state": "waiting"}
                assert (await asyncio.to_thread(models_now, base))[HUB_COPY]["loaded"] is False
                # base idle: the copy may load
                base_events = await send_clip_and_end(on_base, other)
                started = await first_events(on_copy, "ready")
                return base_events, started, await send_clip_and_end(on_copy, english)

        base_events, started, copy_events = asyncio.run(scenario())
        assert wer(other.reference, text_of(base_events)) < FOREIGN_WER
        assert (
            started[-1]["model"] == HUB_COPY and wer(english.reference, text_of(copy_events)) < 0.35
        )
        listed = models_now(base)
        assert (
            listed[HUB_COPY]["loaded"]
            and not listed["base"]["loaded"]
            and listed["base"]["unloads"] == 1
        )
        assert listed[HUB_COPY]["available_offline"] and listed["tiny.en"]["loaded"]
        # now the copy is the idle one: evicted
        assert upload(base, other, model="base").status_code == 200
        listed = models_now(base)
        assert (
            listed["base"]["loaded"]
            and not listed[HUB_COPY]["loaded"]
            and listed[HUB_COPY]["unloads"] == 1
        )


def test_unknown_and_broken_models_are_refused_with_their_reason_and_the_server_goes_on(
    hub_cache: dict[str, str], en_clips: list[Clip]
) -> None:
    clip = by_length(en_clips, 1)[0]
    with serve_process([], hub_cache) as (base, _, _):
        for name in ("nonesuch", "large-v3", "../../etc"):
            # large-v3: offline, and not in the cache
            refused = upload(base, clip, model=name)
            assert (
                refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
            ), refused.text
            assert "available are tiny.en, base" in refused.json()["error"]["message"]
        assert (
            httpx.post(
                base + "/v1/sessions", json={"source": "publish", "model": "nonesuch"}
            ).status_code
            == 404
        )
        unknown = asyncio.run(
            stream_file(ws_url(base), clip.path, speed=0, start={"model": "nonesuch"})
        )
        assert unknown.close_code == NO_MODEL and "unknown model 'nonesuch'" in unknown.close_reason

        broken = upload(base, clip, model=BROKEN)
        assert broken.status_code == 500 and broken.json()["error"]["code"] == "model_load_failed"
        assert f"model {BROKEN!r} failed to load" in broken.json()["error"]["message"]
        on_broken = asyncio.run(
            stream_file(ws_url(base), clip.path, speed=0, start={"model": BROKEN})
        )
        assert on_broken.events[0] == {"type": "loading", "model": BROKEN, "state": "loading"}
        assert on_broken.close_code == INTERNAL and "failed to load" in on_broken.close_reason
        listed = models_now(base)[BROKEN]
        assert not listed["loaded"] and listed["error"] and listed["loads"] == 0

        served = upload(base, clip)  # the server goes on
        assert served.status_code == 200 and wer(clip.reference, served.json()["text"]) < 0.35


def test_the_page_picker_chooses_the_model_of_the_upload_the_microphone_and_a_session(
    fake_microphone: tuple[Clip, Path],  # noqa: F811 - test_browser's fixture
    non_en_clips: list[Clip],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    clip, wav = fake_microphone
    other = foreign(non_en_clips)
    with (
        serve_process(["--data-dir", str(tmp_path / "data")]) as (base, _, _),
        sync_playwright() as playwright,
    ):
        browser = chromium(playwright, wav)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            expect(page.locator("#model option[value='base']")).to_have_count(1, timeout=30_000)
            assert page.locator("#model").input_value() == "tiny.en"  # the default first
            page.select_option("#model", "base")

            page.set_input_files("#file", str(other.path))
            page.click("#upload-form button")
            expect(page.locator("#upload-result p").first).to_be_visible(timeout=120_000)
            assert page.locator("#upload-result").get_attribute("data-language") == other.language
            uploaded = " ".join(page.locator("#upload-result .text").all_inner_texts())
            assert wer(other.reference, uploaded) < FOREIGN_WER, uploaded

            page.click("#start")
            expect(page.locator("#state")).to_contain_text("listening (base", timeout=60_000)
            page.wait_for_timeout((clip.duration + 2) * 1000)  # the first pass of the looped file
            page.click("#stop")
            expect(page.locator("#state")).to_have_text("stopped", timeout=60_000)
            heard = first_pass_captions(page, clip.duration)
            assert wer(clip.reference, " ".join(heard)) < 0.35, heard

            page.set_input_files("#media-file", str(clip.path))
            page.click("#media-upload-form button")
            expect(page.locator("#sessions-message")).to_have_text(
                f"added {clip.path.name}", timeout=30_000
            )
            page.click("#media-start")
            expect(page.locator("#sessions-message")).to_contain_text("started", timeout=60_000)
            session = page.locator("#sessions-message").inner_text().split()[1]
            assert httpx.get(f"{base}/v1/sessions/{session}").json()["model"] == "base"
            expect(page.locator(f"tr[data-session='{session}']")).to_contain_text(
                "base", timeout=10_000
            )
            page.screenshot(path=str(tmp_path / "picker.png"), full_page=True)
        finally:
            browser.close()


def test_a_preload_that_cannot_load_is_one_line_before_anything_listens() -> None:
    done = run_cli("serve", "--port", "0", "--preload", "nonesuch", timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert (
        "model 'nonesuch' failed to load" in done.stderr and "not available offline" in done.stderr
    )
