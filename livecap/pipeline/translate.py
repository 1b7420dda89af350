"""The translation stage: captions are translated on the engine's shared pool and leave in the order
they came. Each stream has one small ordering thread; the translating threads belong to the engine,
so many streams never multiply the model's concurrent callers."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import replace

from livecap.messages import Caption
from livecap.translators.base import TranslationRequest, Translator


class TranslationStage:
    """Per-stream: takes captions (and markers, which keep their place), emits them in order."""

    def __init__(
        self,
        translator: Translator,
        target: str,
        pool: Executor,
        emit: Callable[[object], None],
        *,
        in_flight: int,
        name: str,
        end_marker: object,
    ) -> None:
        self.translator = translator
        self.target = target
        self._pool = pool
        self._emit = emit
        self._end_marker = end_marker
        self._inbox: queue.Queue[object] = queue.Queue(maxsize=in_flight)
        # bounded: at most this many captions in the stage
        self._room = threading.Semaphore(in_flight)
        self._in_flight: deque[Future[object]] = deque()
        self._order = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: object) -> None:
        """A caption to translate, or any other item to pass through in order (waits when full)."""
        self._inbox.put(item)

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            self._room.acquire()
            if isinstance(item, Caption):
                future = self._pool.submit(self._translate, item)
            else:
                future = Future()
                future.set_result(item)
            with self._order:
                self._in_flight.append(future)
            future.add_done_callback(self._emit_ready)
            if item is self._end_marker:
                return

    def _emit_ready(self, _: Future[object] | None = None) -> None:
        with self._order:
            while self._in_flight and self._in_flight[0].done():
                self._emit(self._in_flight.popleft().result())
                self._room.release()

    def _translate(self, caption: Caption) -> Caption:
        started = time.monotonic()
        request = TranslationRequest(caption.text, caption.language, self.target, caption.audio)
        try:
            translation, failed = self.translator.translate(request), False
        except Exception:  # show the original, marked, and go on
            translation, failed = caption.text, True
        timings = {**caption.timings, "translate_start": started, "translate_end": time.monotonic()}
        # the audio was only needed here: dropping it keeps a long result from holding all its audio
        return replace(
            caption, translation=translation, translation_failed=failed, timings=timings, audio=None
        )
