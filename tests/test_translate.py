"""Translation: Whisper speech translation on real non-English speech, the ordered translation stage,
subtitle text, and the Argos backend through the CLI (a real tiny package built at test time)."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import srt

from conftest import Clip, run_cli
from livecap.asr.base import AsrRequest, AsrResult, AsrSegment
from livecap.asr.pool import AsrPool
from livecap.bench.mix import write_wav
from livecap.config import Config
from livecap.messages import SAMPLE_RATE, Caption, StreamEnd, StreamError
from livecap.pipeline.stream import Stream
from livecap.sources.file import FileSource
from livecap.translators.base import TranslationRequest

pytestmark = pytest.mark.slow

# Content words an English translation of each shared clip should contain (at least two each).
# de: "Der hinter diesem Portal liegenden Raum wurde als Leichenhalle genutzt."
# es: "Las arenas son blanquecinas de grano medio y tiene muy poca asistencia."
# fr: "Sous le consulat il devient conservateur des eaux et forêts et conseiller général."
EXPECTED = {
    "de": {"portal", "room", "hall", "morgue", "mortuary", "behind", "used"},
    "es": {"sand", "sands", "white", "whitish", "grain", "medium", "little"},
    "fr": {"under", "consulate", "console", "forest", "forests", "water", "waters", "general", "council"},
}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-zà-ÿ]+", text.lower()))


def test_whisper_translates_speech_to_english(non_en_clips: list[Clip], tmp_path: Path) -> None:
    """One `file` run over the German, Spanish and French clips: json holds both texts, srt shows both."""
    chosen = {c.language: c for c in non_en_clips if c.language in EXPECTED}
    assert set(chosen) == set(EXPECTED)
    result = run_cli(
        "file", *(str(c.path) for c in chosen.values()), "--model", "base", "--translate-to", "en",
        "--output-dir", str(tmp_path), "--output-format", "json,srt", "--plain",
    )
    assert result.returncode == 0, result.stderr
    for language, clip in chosen.items():
        document = json.loads((tmp_path / f"{clip.path.stem}.json").read_text(encoding="utf-8"))
        segments = document["segments"]
        assert segments and document["language"] == language
        original = " ".join(s["text"] for s in segments)
        translation = " ".join(s["translation"] for s in segments)
        assert not any(s["translation_failed"] for s in segments)
        assert "the" in words(translation), translation  # English, not the original language
        assert len(words(translation) & EXPECTED[language]) >= 2, translation
        assert words(original) & words(clip.reference), original  # the original stays the transcript
        for name, text in ((f"{clip.path.stem}.srt", original), (f"{clip.path.stem}.en.srt", translation)):
            cues = srt.parse((tmp_path / name).read_text(encoding="utf-8"))
            assert " ".join(cue.content for cue in cues).split() == text.split()
        for segment in segments:
            assert f"{segment['text']} || {segment['translation']}" in result.stdout


class FakeBackend:
    """Two segments per utterance, numbered in call order, after a random delay (unit test only)."""

    name, device, compute_type, multilingual = "fake", "cpu", "int8", True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0

    def transcribe(self, request: AsrRequest) -> AsrResult:
        samples = request.samples
        time.sleep(random.uniform(0, 0.03))
        with self._lock:
            self.calls += 1
            n = self.calls
        half = len(samples) / SAMPLE_RATE / 2
        segments = (AsrSegment(0.0, half, f"u{n} first"), AsrSegment(half, 2 * half, f"u{n} second"))
        return AsrResult(segments, "de", 1.0)


FAILING = "u2 first"


class FakeTranslator:
    """Sleeps a random time per caption; one caption ("u2 first") fails (unit test only).
    Called from several translation threads at once, in no particular order."""

    name = "fake"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def translate(self, request: TranslationRequest) -> str:
        assert request.samples is not None and len(request.samples) > 0
        self.seen.append(request.text)
        time.sleep(random.uniform(0, 0.05))
        if request.text == FAILING:
            raise RuntimeError("translation backend broke")
        return f"{request.target_language}: {request.text}"


def test_translation_keeps_order_and_survives_a_failure(en_clips: list[Clip], tmp_path: Path) -> None:
    """Two streams share the ASR pool and the engine's one translation pool: real audio through the
    real VAD and reordering, with fake ASR and translation timings. Each stream's captions leave in
    order, each translated once, a failing translation does not stop them, and no caption keeps its
    audio once translated (a long result must not hold all its audio)."""
    from faster_whisper.audio import decode_audio

    gap = np.zeros(SAMPLE_RATE * 3 // 2, dtype=np.float32)
    audio = np.concatenate([part for clip in en_clips[:4] for part in (decode_audio(str(clip.path)), gap)])
    path = write_wav(tmp_path / "several.wav", audio)
    base = Config()
    config = replace(base, live=replace(base.live, interim=False), translate=replace(base.translate, translate_to="en"))
    translator = FakeTranslator()
    pool = AsrPool(FakeBackend(), workers=3)
    translation_pool = ThreadPoolExecutor(3)
    streams = [
        Stream(FileSource(path), pool, config, stream_id=f"s{i}", live=True, translator=translator,
               translation_pool=translation_pool)
        for i in (1, 2)
    ]
    events: dict[str, list[object]] = {s.stream_id: [] for s in streams}
    for stream in streams:
        stream.start()
    while not all(e and isinstance(e[-1], StreamEnd) for e in events.values()):
        for stream in streams:
            event = stream.next_event(timeout=0.05)
            if event is not None:
                events[stream.stream_id].append(event)
    pool.shutdown()
    translation_pool.shutdown()
    everything = []
    for stream_id, received in events.items():
        assert isinstance(received[-1], StreamEnd) and received[-1].reason is None
        assert not [e for e in received if isinstance(e, StreamError)]
        captions = [e for e in received if isinstance(e, Caption)]
        assert len(captions) >= 6  # two per utterance, at least one utterance per clip
        assert {c.stream_id for c in captions} == {stream_id}
        assert [c.seq for c in captions] == list(range(len(captions)))
        assert [c.start for c in captions] == sorted(c.start for c in captions)
        everything += captions
    assert sorted(c.text for c in everything) == sorted(translator.seen)  # each translated once
    assert any(c.text == FAILING for c in everything)
    for caption in everything:
        if caption.text == FAILING:
            assert caption.translation == caption.text and caption.translation_failed
        else:
            assert caption.translation == f"en: {caption.text}" and not caption.translation_failed
        assert caption.timings["translate_start"] >= caption.timings["asr_end"]
        assert caption.audio is None


NO_ARGOS = (
    "import sys; sys.modules['argostranslate'] = None; from livecap.cli import main; "
    "sys.argv[0] = 'livecap'; main()"
)


def test_argos_without_the_extra_is_a_one_line_error(en_clips: list[Clip], tmp_path: Path) -> None:
    """As if argostranslate were not installed (a None entry in sys.modules makes its import fail)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_ARGOS,
            "file",
            str(en_clips[0].path),
            "--translate-to",
            "de",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: argos translation needs the optional extra: pip install 'livecap[argos]'"
    ]
    assert result.stdout == "" and not list(tmp_path.iterdir())  # failed at start, before any audio


def argos_env(root: Path) -> dict[str, str]:
    """Environment that keeps argostranslate's (and livecap's user config) files under `root`."""
    env = {key: str(root / key.lower()) for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    return {**env, "ARGOS_PACKAGES_DIR": str(root / "packages"), "ARGOS_PACKAGE_INDEX": "http://127.0.0.1:9/"}


def test_argos_install_list_and_translate_through_the_cli(
    en_clips: list[Clip], tmp_path: Path, loopback_server: tuple[str, Path]
) -> None:
    """Install from a file and from a loopback index, list the pairs, then caption with argos."""
    pytest.importorskip("argostranslate")
    from argos_fixture import GREETINGS, build_argos_package

    env = argos_env(tmp_path / "argos")
    en_de = build_argos_package(tmp_path, "en", "de")
    installed = run_cli("models", "install-translation", str(en_de), env=env)
    assert installed.returncode == 0, installed.stderr
    assert "installed translation en → de" in installed.stdout

    url, served = loopback_server
    build_argos_package(served, "es", "en")
    entry = {"from_code": "es", "to_code": "en", "package_version": "1.0", "links": [f"{url}/es_en.argosmodel"]}
    (served / "index.json").write_text(json.dumps([entry]))
    index_env = {**env, "LIVECAP_ARGOS_INDEX_URL": f"{url}/index.json", "no_proxy": "127.0.0.1"}
    from_index = run_cli("models", "install-translation", "--from", "es", "--to", "en", env=index_env)
    assert from_index.returncode == 0, from_index.stderr
    assert "installed translation es → en" in from_index.stdout
    missing = run_cli("models", "install-translation", "--from", "it", "--to", "en", env=index_env)
    assert missing.returncode == 2 and "has no it → en package" in missing.stderr

    listed = run_cli("models", env=env)
    assert listed.returncode == 0 and "argos en → de, es → en" in listed.stdout

    out = tmp_path / "out"
    captioned = run_cli(
        "file",
        str(en_clips[0].path),
        "--translate-to",
        "de",
        "--output-dir",
        str(out),
        "--output-format",
        "json,vtt",
        "--subtitle-text",
        "translation",
        env=env,
    )
    assert captioned.returncode == 0, captioned.stderr
    segments = json.loads((out / f"{en_clips[0].path.stem}.json").read_text(encoding="utf-8"))["segments"]
    assert segments and all(s["language"] == "en" and s["translation"] == GREETINGS["de"] for s in segments)
    assert not (out / f"{en_clips[0].path.stem}.vtt").exists()  # --subtitle-text translation: only <stem>.de.vtt
    vtt = (out / f"{en_clips[0].path.stem}.de.vtt").read_text(encoding="utf-8")
    assert vtt.count(f"\n{GREETINGS['de']}\n") == len(segments) and segments[0]["text"] not in vtt

    no_pair = run_cli("file", str(en_clips[0].path), "--translate-to", "fr", "--output-dir", str(out), env=env)
    assert no_pair.returncode == 2 and "no Argos translation package translates into fr" in no_pair.stderr
