"""The engine: one loaded model, one ASR pool and one translation pool, shared by any number of
streams. Each stream gets a unique id, so the pool's per-stream rules never mix two streams.
`open_models` is the registry of a server's engines: one per model, loaded on demand."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from livecap.asr.base import DecodeOptions
from livecap.asr.device import pick_device
from livecap.asr.models import offered_models, requestable, resolve_model, resolve_requested
from livecap.asr.pool import AsrPool
from livecap.asr.registry import ModelRegistry
from livecap.asr.whisper import WhisperBackend
from livecap.config import Config
from livecap.pipeline.stream import Stream
from livecap.sources.queue import AudioSource
from livecap.translators import open_translator, whisper_callers


class Engine:
    """One loaded model and its worker pools; streams share them."""

    def __init__(self, config: Config, model_path: str | None = None) -> None:
        """`model_path`: the resolved model to load (default: `config.asr.model` resolved)."""
        self.config = config
        workers = config.asr.workers
        self.backend = WhisperBackend(
            config.asr,
            device=pick_device(config.asr.device),
            extra_workers=whisper_callers(config.translate, workers),
            path=model_path,
        )
        self.pool = AsrPool(
            self.backend,
            workers,
            batch_size=self.backend.batch_size,
            batch_wait_ms=config.asr.batch_wait_ms,
            interim_share=config.live.interim_pool_share,
        )
        self.translator = open_translator(config.translate, self.backend)
        # as many translating threads as ASR workers, whatever the number of streams
        self.translation_pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="translate")
            if self.translator is not None
            else None
        )
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        if config.diarize.diarize:
            # the speaker model loads here, not when a stream (maybe on a server's loop) opens
            from livecap.diarize.model import shared_model

            shared_model()

    def stream(
        self,
        source: AudioSource,
        *,
        live: bool,
        decode: DecodeOptions | None = None,
        converter: Callable[[np.ndarray], np.ndarray] | None = None,
        stream_id: str | None = None,
        config: Config | None = None,
        vad_events: bool = False,
    ) -> Stream:
        """A new stream on this engine's pools, with its own id (or `stream_id`, unique among the
        streams of this engine) and decoding options. `config`: this stream's own VAD and live
        settings (a client's endpointing, interims off); the model, the workers and translation stay
        the engine's."""
        if stream_id is None:
            with self._ids_lock:
                stream_id = f"s{next(self._ids)}"
        return Stream(
            source,
            self.pool,
            self._own(config),
            stream_id=stream_id,
            live=live,
            decode=decode or DecodeOptions(),
            translator=self.translator,
            translation_pool=self.translation_pool,
            converter=converter,
            vad_events=vad_events,
        )

    def _own(self, config: Config | None) -> Config:
        """The engine's config with a stream's VAD and live settings (nothing else may differ)."""
        if config is None:
            return self.config
        return replace(self.config, vad=config.vad, live=config.live)

    def close(self) -> None:
        self.pool.shutdown()
        if self.translation_pool is not None:
            self.translation_pool.shutdown(wait=True, cancel_futures=True)
        self.backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_models(
    config: Config,
    *,
    preload: Iterable[str] = (),
    ttl_s: float = 300.0,
    max_models: int = 2,
    wait_s: float = 120.0,
    engine: Engine | None = None,
) -> ModelRegistry:
    """A server's models: `config.asr.model` (the default; `engine` when given, which the caller
    closes) and `preload`, loaded now and kept; any other model a client may name (see
    `requestable`) loaded on demand with `config`'s other settings."""
    # the operator's names may be directories; a client's never
    operator = {config.asr.model, *preload}

    def load(name: str) -> Engine:
        path = resolve_model(name) if name in operator else resolve_requested(name)
        return Engine(replace(config, asr=replace(config.asr, model=name)), model_path=path)

    registry = ModelRegistry(
        load,
        default=config.asr.model,
        pinned=preload,
        known=requestable,
        offer=offered_models,
        ttl_s=ttl_s,
        max_models=max_models,
        wait_s=wait_s,
        adopted={config.asr.model: engine} if engine is not None else None,
    )
    try:
        registry.preload()
    except BaseException:
        registry.close()
        raise
    return registry
