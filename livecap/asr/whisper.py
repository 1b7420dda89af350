"""The ASR backend: faster-whisper (CTranslate2), one model shared by all workers.

CTranslate2 releases the GIL, so worker threads decode in parallel on one loaded model
(`num_workers`). What each decode asks for lives in `decoding`, the guards that drop Whisper's
known failures in `guards`, the batched decode of several finals in `windows`, and the choice of
device, threads and batch size in `device`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from livecap.asr.base import AsrRequest, AsrResult, AsrSegment, AsrWord
from livecap.asr.decoding import (
    INTERIM_INPUT,
    INTERIM_TOKENS_PER_S,
    WHISPER_WINDOW_S,
    hotwords_of,
    requested_language,
    task_of,
    transcribe_options,
)
from livecap.asr.device import batch_size_for, compute_type_for, cpu_threads
from livecap.asr.guards import collapse_repeats, is_hallucination
from livecap.asr.models import offline_hint, resolve_model
from livecap.asr.windows import WindowLoop, as_storage
from livecap.config import AsrConfig
from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE

logger = logging.getLogger(__name__)


class WhisperBackend:
    """faster-whisper on CTranslate2, CPU or CUDA."""

    def __init__(
        self,
        options: AsrConfig,
        device: str = "cpu",
        extra_workers: int = 0,
        path: str | None = None,
    ) -> None:
        """`extra_workers`: concurrent callers beyond the ASR pool (the Whisper translation thread);
        `path`: what to load, already resolved (default: `resolve_model(options.model)`)."""
        from faster_whisper import WhisperModel

        self.options = options
        self.name = options.model
        self.device = device
        self.compute_type = compute_type_for(options, device)
        path = path or resolve_model(options.model)
        try:
            self.model = WhisperModel(
                path,
                device=device,
                compute_type=self.compute_type,
                cpu_threads=cpu_threads(options),
                num_workers=options.workers + extra_workers,
                local_files_only=_offline(),
            )
        except Exception as error:
            # CTranslate2 and huggingface_hub raise many types for a bad model
            raise LivecapError(_load_error(options.model, path, error)) from None
        self.multilingual = self.model.model.is_multilingual
        # after loading: the model holds its memory
        self.batch_size = batch_size_for(options, device)
        if options.language and not self.multilingual and options.language != "en":
            raise LivecapError(
                f"model {options.model} is English-only; use --model base for --language "
                f"{options.language}"
            )
        if options.task == "translate" and not self.multilingual:
            raise LivecapError(
                f"model {options.model} is English-only and cannot translate; use --model base"
            )

    def close(self) -> None:
        """Free the model's memory now, even where something still holds this backend (a finished
        stream kept for its figures): CTranslate2 releases the weights on `unload_model`."""
        model = getattr(self, "model", None)
        if model is not None:
            model.model.unload_model()
            del self.model

    def transcribe(self, request: AsrRequest) -> AsrResult:
        """One request alone: a final through the window loop (`windows`, as a batch of one: the
        same caption as in any batch, and the same on every run), an interim through `_glance`, or
        through faster-whisper's greedy `transcribe` while its language is unknown."""
        if request.final:
            return WindowLoop(self.model, self.options, self.device, self.multilingual).run(
                [request]
            )[0]
        language = requested_language(request, self.options, self.multilingual)
        if language is not None:
            return self._glance(request, language)
        segments, info = self.model.transcribe(
            request.samples, **transcribe_options(request, self.options, self.multilingual)
        )
        kept = []
        for segment in segments:
            text = collapse_repeats(segment.text.strip())
            if not is_hallucination(text, segment.no_speech_prob, segment.avg_logprob):
                words = tuple(
                    AsrWord(w.start, w.end, w.word.strip(), w.probability)
                    for w in (segment.words or ())
                )
                kept.append(AsrSegment(segment.start, segment.end, text, words))
        return AsrResult(tuple(kept), info.language, info.language_probability)

    def _glance(self, request: AsrRequest, language: str) -> AsrResult:
        """An interim: one greedy decode without timestamps, on an encoder input cut to the audio's
        length (`INTERIM_INPUT`), so an interim costs a fraction of a final."""
        return self._glance_many([_Glance.of(self, request, language)])[0]

    def _glance_many(self, glances: Sequence[_Glance]) -> list[AsrResult]:
        """Interims of the same encoder input length and prompt decoded as one batch (the decoder's
        steps cost little more for several sequences than for one); each is cut at its own length
        limit (the batch's is the longest), so a runaway loop on a short window stays short."""
        from faster_whisper.transcribe import get_suppressed_tokens

        first = glances[0]
        loop = WindowLoop(self.model, self.options, self.device, self.multilingual)
        encoded = loop.encode(np.stack([g.features for g in glances]))  # on a CPU, one at a time
        results = self.model.model.generate(
            as_storage(encoded),
            [first.prompt] * len(glances),
            beam_size=1,
            max_length=max(g.max_length for g in glances),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(first.tokenizer, (-1,)),
        )
        return [g.read(result) for g, result in zip(glances, results)]

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult | Exception]:
        """Finals of any streams decoded together through the window loop (`windows`), so a caption
        is the one `transcribe` gives; interims of the same shape together (`_glance_many`). A
        failing batch sends each request alone: one bad item fails only itself."""
        results: list[AsrResult | Exception | None] = [None] * len(requests)
        self._glance_batches(requests, results)
        finals = [i for i, r in enumerate(requests) if r.final]
        if finals:
            loop = WindowLoop(self.model, self.options, self.device, self.multilingual)
            try:
                for i, result in zip(finals, loop.run([requests[i] for i in finals])):
                    results[i] = result
            except Exception as failure:  # each request is retried alone below, with its own error
                logger.warning("batched decode failed, each final goes alone: %s", failure)
        for i, request in enumerate(requests):
            if results[i] is None:
                try:
                    results[i] = self.transcribe(request)
                except Exception as failure:
                    results[i] = failure
        return results  # type: ignore[return-value]

    def _glance_batches(self, requests: Sequence[AsrRequest], results: list) -> None:
        """Interims whose encoder input and prompt match, decoded together (into `results`); a
        batch that fails leaves its interims to go alone."""
        groups: dict[tuple, list[tuple[int, _Glance]]] = {}
        for i, request in enumerate(requests):
            language = (
                None
                if request.final
                else requested_language(request, self.options, self.multilingual)
            )
            if language is not None:
                glance = _Glance.of(self, request, language)
                groups.setdefault((glance.features.shape, tuple(glance.prompt)), []).append(
                    (i, glance)
                )
        for group in groups.values():
            try:
                for (i, _), result in zip(group, self._glance_many([g for _, g in group])):
                    results[i] = result
            except Exception as failure:  # each interim is tried alone after
                logger.warning("batched interims failed, each goes alone: %s", failure)


@dataclass(frozen=True)
class _Glance:
    """One interim's decoder input: its features, prompt and length limit, and how to read its
    result."""

    features: np.ndarray
    prompt: list[int]
    max_length: int
    tokenizer: Any
    seconds: float
    language: str

    @classmethod
    def of(cls, backend: WhisperBackend, request: AsrRequest, language: str) -> _Glance:
        from faster_whisper.tokenizer import Tokenizer

        model, samples = backend.model, request.samples
        seconds = len(samples) / SAMPLE_RATE
        if seconds > WHISPER_WINDOW_S - INTERIM_INPUT.pad_s:
            samples = samples[-int((WHISPER_WINDOW_S - INTERIM_INPUT.pad_s) * SAMPLE_RATE) :]
        padded = np.zeros(INTERIM_INPUT.length(len(samples), SAMPLE_RATE), dtype=np.float32)
        padded[: len(samples)] = samples
        features = model.feature_extractor(padded, padding=0)
        # the encoder halves frames
        features = features[:, : features.shape[-1] - features.shape[-1] % 2]
        tokenizer = Tokenizer(
            model.hf_tokenizer,
            backend.multilingual,
            task=task_of(request, backend.options),
            language=language,
        )
        prompt = model.get_prompt(
            tokenizer, [], without_timestamps=True, hotwords=hotwords_of(request, backend.options)
        )
        max_length = int(INTERIM_TOKENS_PER_S * seconds) + 16  # no runaway loops on a short window
        return cls(features, prompt, max_length, tokenizer, seconds, language)

    def read(self, result: Any) -> AsrResult:
        """Its text (cut at its own length limit), or nothing when the guards call it a
        hallucination."""
        # the limit counts the prompt
        tokens = result.sequences_ids[0][: self.max_length - len(self.prompt)]
        text = collapse_repeats(self.tokenizer.decode(tokens).strip())
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if not text or is_hallucination(text, result.no_speech_prob, avg_logprob):
            return AsrResult((), self.language, 1.0)
        return AsrResult((AsrSegment(0.0, self.seconds, text),), self.language, 1.0)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _load_error(name: str, path: str, error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "CUDA" in text or "cuda" in text or "cudnn" in text.lower() or "cublas" in text.lower():
        return f"cannot run {name} on CUDA: {text}"
    if os.path.isdir(path):
        return f"cannot load the model in {path}: {text}"
    return offline_hint(name) + f" ({type(error).__name__})"
