"""The engine: one loaded model, one ASR pool and one translation pool, shared by any number of
streams. Each stream gets a unique id, so the pool's per-stream rules never mix two streams."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from livecap.asr.base import DecodeOptions
from livecap.asr.device import pick_device
from livecap.asr.pool import AsrPool
from livecap.asr.whisper import WhisperBackend
from livecap.config import Config
from livecap.pipeline.stream import Stream
from livecap.sources.queue import AudioSource
from livecap.translators import open_translator, whisper_callers


class Engine:
    """One loaded model and its worker pools; streams share them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        workers = config.asr.workers
        self.backend = WhisperBackend(
            config.asr, device=pick_device(config.asr.device), extra_workers=whisper_callers(config.translate, workers)
        )
        self.pool = AsrPool(
            self.backend, workers, batch_size=self.backend.batch_size, batch_wait_ms=config.asr.batch_wait_ms,
            interim_share=config.live.interim_pool_share,
        )
        self.translator = open_translator(config.translate, self.backend)
        # as many translating threads as ASR workers, whatever the number of streams
        self.translation_pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="translate") if self.translator is not None else None
        )
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()

    def stream(
        self,
        source: AudioSource,
        *,
        live: bool,
        decode: DecodeOptions | None = None,
        converter: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Stream:
        """A new stream on this engine's pools, with its own id and decoding options."""
        with self._ids_lock:
            stream_id = f"s{next(self._ids)}"
        return Stream(
            source,
            self.pool,
            self.config,
            stream_id=stream_id,
            live=live,
            decode=decode or DecodeOptions(),
            translator=self.translator,
            translation_pool=self.translation_pool,
            converter=converter,
        )

    def close(self) -> None:
        self.pool.shutdown()
        if self.translation_pool is not None:
            self.translation_pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
