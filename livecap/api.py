"""The library API: everything the CLI does, callable from Python.

    from livecap import transcribe
    result = transcribe("talk.mp3")
    for caption in result.captions:
        print(caption.start, caption.text)
"""

from __future__ import annotations

from pathlib import Path

from livecap.asr import WhisperBackend, pick_device
from livecap.capture import FileSource
from livecap.config import Config
from livecap.engine import Stream
from livecap.scheduler import AsrPool
from livecap.session import SessionResult, run_session
from livecap.translators import open_translator, whisper_callers
from livecap.view import Display, PlainView
from livecap.writers import Journal


class Engine:
    """One loaded model and its worker pool; streams share it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.backend = WhisperBackend(
            config.asr, device=pick_device(config.asr.device), extra_workers=whisper_callers(config.translate, config.asr.workers)
        )
        self.pool = AsrPool(self.backend, config.asr.workers)
        self.translator = open_translator(config.translate, self.backend)

    def stream(self, source, *, live: bool, stream_id: str = "0", converter=None) -> Stream:  # noqa: ANN001
        return Stream(
            source,
            self.pool,
            self.config,
            live=live,
            translator=self.translator,
            stream_id=stream_id,
            converter=converter,
        )

    def close(self) -> None:
        self.pool.shutdown()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def transcribe(
    path: str | Path,
    config: Config | None = None,
    *,
    engine: Engine | None = None,
    realtime: bool = False,
    display: Display | None = None,
    journal: Journal | None = None,
) -> SessionResult:
    """Transcribe (and translate) one file; `realtime` replays it at 1x through the live pipeline."""
    own = engine is None
    engine = engine or Engine(config or Config())
    try:
        source = FileSource(Path(path), realtime=realtime)
        stream = engine.stream(source, live=realtime)
        return run_session(stream, display or PlainView(), journal)
    finally:
        if own:
            engine.close()
