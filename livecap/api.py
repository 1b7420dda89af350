"""The library API: transcribe a file from Python, with what the CLI uses underneath.

    from livecap import transcribe
    result = transcribe("talk.mp3")
    for caption in result.captions:
        print(caption.start, caption.text)
"""

from __future__ import annotations

from pathlib import Path

from livecap.config import Config
from livecap.engine import Engine
from livecap.pipeline.runner import CaptionSink, Display, RunResult, run_stream
from livecap.sources.file import FileSource


def transcribe(
    path: str | Path,
    config: Config | None = None,
    *,
    engine: Engine | None = None,
    realtime: bool = False,
    display: Display | None = None,
    journal: CaptionSink | None = None,
) -> RunResult:
    """Transcribe (and translate) one file; `realtime` replays it at 1x through the live pipeline.
    With `diarize` on in the config, captions carry speakers (from one pass over the whole file)."""
    own = engine is None
    engine = engine or Engine(config or Config())
    try:
        source = FileSource(Path(path), realtime=realtime)
        result = run_stream(engine.stream(source, live=realtime), display, journal)
        if engine.config.diarize.diarize and result.captions:
            from livecap.diarize.files import diarize_result

            result = diarize_result(result, source.path, engine.config)
        return result
    finally:
        if own:
            engine.close()
