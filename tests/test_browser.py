"""The page at `/` in real headless Chromium: its fake microphone plays real speech (then silence;
Chromium loops the file) through getUserMedia and the AudioWorklet to the server, and the right
words must appear on the page; the upload form must show a file's captions; a page publishing its
microphone as a shared session is watched by two phone-sized viewer pages, and a session started
from the media library is watched from the session list. Screenshots are kept in the test's
temporary folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import Clip
from livecap.bench.wer import wer
from livecap.config import Config
from livecap.engine import Engine
from test_server import by_length, running

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")


def speech_then_silence(clip: Clip, out: Path, silence_s: float = 4.0) -> Path:
    """The clip as 48 kHz 16-bit mono WAV (what Chromium's
    fake capture reads) followed by silence."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(clip.path), "-af", f"apad=pad_dur={silence_s}",
         "-ar", "48000", "-ac", "1", "-c:a", "pcm_s16le", str(out)],
        check=True,
    )
    return out


def chromium(playwright: Any, wav: Path) -> Any:
    """Headless Chromium whose fake microphone plays `wav` (looped), no permission prompt."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def first_pass_captions(page: Any, duration: float) -> list[str]:
    """The page's finals from the first pass of the looped file."""
    return [line.locator(".text").inner_text() for line in page.locator("#captions p").all()
            if float(line.get_attribute("data-start")) < duration]


@pytest.fixture(scope="module")
def browser_engine() -> Engine:
    with Engine(Config()) as engine:
        yield engine


@pytest.fixture
def fake_microphone(en_clips: list[Clip], tmp_path: Path) -> tuple[Clip, Path]:
    """A clip and the WAV Chromium's fake microphone plays (speech, then silence); skips where the
    browser or ffmpeg is missing."""
    if not CHROMIUM.is_file() or shutil.which("ffmpeg") is None:
        pytest.skip("Debian's chromium and ffmpeg are needed (scripts/install.sh installs them)")
    clip = by_length(en_clips, 1)[0]
    return clip, speech_then_silence(clip, tmp_path / "mic.wav")


def test_microphone_page_and_upload_form(
    browser_engine: Engine, fake_microphone: tuple[Clip, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    clip, wav = fake_microphone
    with running(browser_engine, api_key="k3y") as base, sync_playwright() as playwright:
        browser = chromium(playwright, wav)
        try:
            page = browser.new_page()
            page.goto(base + "/?api_key=k3y")
            page.click("#start")
            expect(page.locator("#state")).to_contain_text("listening", timeout=30_000)
            # an interim: stable + dimmed tail
            expect(page.locator("#current")).not_to_have_text("", timeout=60_000)
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            # the first pass of the looped file has been heard
            page.wait_for_timeout((clip.duration + 2) * 1000)
            page.click("#stop")
            expect(page.locator("#state")).to_have_text("stopped", timeout=30_000)
            first_pass = first_pass_captions(page, clip.duration)
            assert wer(clip.reference, " ".join(first_pass)) < 0.35, first_pass
            assert "latency" in page.locator("#latency").inner_text()

            page.set_input_files("#file", str(clip.path))
            page.click("#upload-form button")
            expect(page.locator("#upload-result p").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)
            uploaded = " ".join(page.locator("#upload-result .text").all_inner_texts())
            assert wer(clip.reference, uploaded) < 0.35, uploaded

            # the server's refusal, then a network failure: each replaces "transcribing..." with why
            page.set_input_files("#file", str(Path(__file__)))
            page.click("#upload-form button")
            expect(page.locator("#upload-result.error")).to_contain_text(
                "not a readable audio", timeout=30_000
            )
            page.route(
                "**/v1/audio/transcriptions", lambda route: route.abort("internetdisconnected")
            )
            page.set_input_files("#file", str(clip.path))
            page.click("#upload-form button")
            expect(page.locator("#upload-result.error")).to_contain_text(
                "cannot reach the server", timeout=30_000
            )
        finally:
            browser.close()


def test_publisher_page_two_viewers_and_a_session_from_the_media_library(
    browser_engine: Engine, fake_microphone: tuple[Clip, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    clip, wav = fake_microphone
    phone = {"width": 390, "height": 844}
    with (
        running(browser_engine, api_key="k3y", data_dir=tmp_path / "data") as base,
        sync_playwright() as playwright,
    ):
        browser = chromium(playwright, wav)
        try:
            publisher = browser.new_page()
            publisher.goto(base + "/?api_key=k3y")
            publisher.click("#publish")
            expect(publisher.locator("#state")).to_contain_text("listening", timeout=30_000)
            session = publisher.locator("#published").get_attribute("data-session")
            viewers = [browser.new_page(viewport=phone) for _ in range(2)]
            for viewer in viewers:
                # the link it shows
                viewer.goto(base + publisher.locator("#watch-link").get_attribute("href"))
                expect(viewer.locator("#state")).to_contain_text(
                    f"watching session {session}", timeout=30_000
                )
            # the first pass of the looped file
            publisher.wait_for_timeout((clip.duration + 2) * 1000)
            viewers[0].screenshot(path=str(tmp_path / "viewer.png"))
            publisher.click("#stop")
            heard = []
            for viewer in viewers:
                expect(viewer.locator("#state")).to_have_text(
                    "session ended: the publisher ended the stream", timeout=30_000
                )
                heard.append(first_pass_captions(viewer, clip.duration))
            assert heard[0] == heard[1] and wer(clip.reference, " ".join(heard[0])) < 0.35, heard
            expect(publisher.locator(f"tr[data-session='{session}']")).to_contain_text(
                "ended", timeout=10_000
            )
            publisher.screenshot(path=str(tmp_path / "publisher.png"), full_page=True)

            publisher.set_input_files("#media-file", str(clip.path))
            publisher.click("#media-upload-form button")
            expect(publisher.locator("#sessions-message")).to_have_text(
                f"added {clip.path.name}", timeout=30_000
            )
            publisher.click("#media-start")
            expect(publisher.locator("#sessions-message")).to_contain_text(
                "started", timeout=30_000
            )
            replayed = publisher.locator("#sessions-message").inner_text().split()[1]
            # the list's link opens the viewer
            publisher.locator(f"tr[data-session='{replayed}'] a").click()
            expect(publisher.locator("#state")).to_have_text(
                "session ended: the media file ended", timeout=60_000
            )
            replay = " ".join(publisher.locator("#captions .text").all_inner_texts())
            assert wer(clip.reference, replay) < 0.35, replay
            publisher.set_viewport_size(phone)
            publisher.screenshot(path=str(tmp_path / "replay-viewer.png"))
        finally:
            browser.close()


def test_the_page_waits_in_line_and_says_its_place(
    browser_engine: Engine, fake_microphone: tuple[Clip, Path], tmp_path: Path
) -> None:
    import json

    from playwright.sync_api import expect, sync_playwright
    from websockets.sync.client import connect

    clip, wav = fake_microphone
    with (
        running(browser_engine, max_streams=1, max_wait_s=300) as base,
        sync_playwright() as playwright,
    ):
        holder = connect(base.replace("http://", "ws://") + "/v1/stream")  # takes the one place
        holder.send(json.dumps({"type": "start"}))
        assert json.loads(holder.recv())["type"] == "ready"
        browser = chromium(playwright, wav)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            page.click("#start")
            expect(page.locator("#state")).to_have_text("waiting: 1st in line", timeout=30_000)
            page.screenshot(path=str(tmp_path / "waiting.png"), full_page=True)
            holder.close()  # the place frees: the page's stream takes it and its audio starts
            expect(page.locator("#state")).to_contain_text("listening", timeout=30_000)
            expect(page.locator("#captions p").first).to_be_visible(timeout=60_000)
            page.click("#stop")
            expect(page.locator("#state")).to_have_text("stopped", timeout=30_000)
            words = " ".join(page.locator("#captions .text").all_inner_texts()).lower().split()
            heard = set(clip.reference.lower().replace(",", "").replace(".", "").split())
            # the microphone loops the clip from wherever it was when the place came: its words, not
            # its order
            assert words and sum(w.strip(",.?!") in heard for w in words) >= 0.6 * len(words), words
        finally:
            browser.close()


def test_microphone_page_sends_opus_and_pcm_when_asked(
    browser_engine: Engine, fake_microphone: tuple[Clip, Path], tmp_path: Path
) -> None:
    """The page records Opus (MediaRecorder, WebM) where the browser can, PCM with ?audio=pcm; both
    are captioned, and the bytes sent (counted on the wire) show what Opus saves."""
    from playwright.sync_api import expect, sync_playwright

    clip, wav = fake_microphone
    sent: dict[str, int] = {}
    with running(browser_engine) as base, sync_playwright() as playwright:
        browser = chromium(playwright, wav)
        try:
            for query, fmt in (("", "opus"), ("?audio=pcm", "s16le")):
                page = browser.new_page()
                sent[fmt] = 0

                def count(socket: Any, fmt: str = fmt) -> None:
                    def frame(payload: bytes | str) -> None:
                        if isinstance(payload, bytes):
                            sent[fmt] += len(payload)

                    socket.on("framesent", frame)

                page.on("websocket", count)
                page.goto(base + "/" + query)
                page.click("#start")
                expect(page.locator("#state")).to_contain_text(f", {fmt})", timeout=30_000)
                # the first pass of the looped file
                page.wait_for_timeout((clip.duration + 2) * 1000)
                page.click("#stop")
                expect(page.locator("#state")).to_have_text("stopped", timeout=30_000)
                first_pass = first_pass_captions(page, clip.duration)
                assert wer(clip.reference, " ".join(first_pass)) < 0.35, (fmt, first_pass)
                page.close()
        finally:
            browser.close()
    assert 0 < sent["opus"] < sent["s16le"] / 4, sent  # 32 kbit/s against 256 kbit/s of 16 kHz PCM


def test_a_final_leaves_the_next_utterances_interim_on_the_page(
    browser_engine: Engine, fake_microphone: tuple[Clip, Path]
) -> None:
    """The page's own handlers, given events in the order a cut in speech sends them: the first
    part's final comes after the next utterance's first interim, which must stay on screen."""
    from playwright.sync_api import sync_playwright

    _, wav = fake_microphone
    with running(browser_engine) as base, sync_playwright() as playwright:
        browser = chromium(playwright, wav)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            shown = page.evaluate("""async () => {
                const { captionHandlers } = await import("/static/captions.js");
                const line = () => document.getElementById("current").textContent.trim();
                const final = (utterance, text) => captionHandlers.final(
                    { utterance, seq: utterance, start: utterance, end: utterance + 1, text });
                captionHandlers.interim(
                    { utterance: 4, committed: "went down", tail: "to the", latency: 0.3 });
                final(3, "So we");
                const kept = line();
                final(4, "went down to the sea.");
                return [kept, line()];
            }""")
        finally:
            browser.close()
    assert shown == ["went down to the", ""]
