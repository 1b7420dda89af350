"""The ASR backend: faster-whisper (CTranslate2), one model shared by all workers.

CTranslate2 releases the GIL, so worker threads decode in parallel on one loaded model
(`num_workers`). Guards drop Whisper's known failure modes: text on silence or noise, and
repetition loops.
"""

from __future__ import annotations

import os
import re
import zlib

import numpy as np

from livecap.asr.base import AsrRequest, AsrResult, AsrSegment, AsrWord
from livecap.asr.models import offline_hint, resolve_model
from livecap.config import AsrConfig
from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE

# Guard thresholds (OpenAI Whisper's defaults, also used by faster-whisper's fallback).
NO_SPEECH_PROB = 0.6
LOG_PROB = -1.0
COMPRESSION_RATIO = 2.4
REPEAT_RUN = 4  # a word or phrase said this many times in a row is a loop
# Interims: the encoder sees the audio plus this much silence, and never less than the window
INTERIM_PAD_S = 2.0
INTERIM_WINDOW_S = 10.0
INTERIM_TOKENS_PER_S = 8  # the most tokens an interim may decode per second of audio
WHISPER_WINDOW_S = 30.0


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def collapse_repeats(text: str) -> str:
    """Cut a run of the same word or phrase (1-4 words) repeated REPEAT_RUN or more times down to one."""
    words = text.split()
    for size in range(1, 5):
        out: list[str] = []
        i = 0
        while i < len(words):
            phrase = words[i : i + size]
            runs = 1
            while words[i + runs * size : i + (runs + 1) * size] == phrase:
                runs += 1
            if runs >= REPEAT_RUN and len(phrase) == size:
                out.extend(phrase)
                i += runs * size
            else:
                out.append(words[i])
                i += 1
        words = out
    return " ".join(words)


def is_hallucination(text: str, no_speech_prob: float, avg_logprob: float) -> bool:
    """Whisper's silence/garbage signature: likely no speech and a low-confidence decode, or a loop."""
    if not re.search(r"\w", text):
        return True
    if no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOG_PROB:
        return True
    return compression_ratio(text) > COMPRESSION_RATIO and len(text) > 40


class WhisperBackend:
    """faster-whisper on CTranslate2, CPU or CUDA."""

    def __init__(self, options: AsrConfig, device: str = "cpu", extra_workers: int = 0) -> None:
        """`extra_workers`: concurrent callers beyond the ASR pool (the Whisper translation thread)."""
        from faster_whisper import WhisperModel

        self.options = options
        self.name = options.model
        self.device = device
        self.compute_type = (
            options.compute_type if options.compute_type != "default" else ("float16" if device == "cuda" else "int8")
        )
        path = resolve_model(options.model)
        threads = options.cpu_threads or max(1, (os.cpu_count() or 1) // options.workers)
        try:
            self.model = WhisperModel(
                path,
                device=device,
                compute_type=self.compute_type,
                cpu_threads=threads,
                num_workers=options.workers + extra_workers,
                local_files_only=_offline(),
            )
        except Exception as error:  # CTranslate2 and huggingface_hub raise many types for a bad model
            raise LivecapError(_load_error(options.model, path, error)) from None
        self.multilingual = self.model.model.is_multilingual
        if options.language and not self.multilingual and options.language != "en":
            raise LivecapError(f"model {options.model} is English-only; use --model base for --language {options.language}")
        if options.task == "translate" and not self.multilingual:
            raise LivecapError(f"model {options.model} is English-only and cannot translate; use --model base")

    def transcribe(self, request: AsrRequest) -> AsrResult:
        language = (request.options.language or self.options.language) if self.multilingual else "en"
        if not request.final and language is not None:
            return self._glance(request, language)
        options, wanted, final = self.options, request.options, request.final
        segments, info = self.model.transcribe(
            request.samples,
            language=(wanted.language or options.language) if self.multilingual else "en",
            task=wanted.task or options.task,
            beam_size=options.beam_size if final else 1,
            best_of=options.beam_size if final else 1,
            temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if final else 0.0,
            condition_on_previous_text=False,  # no context carried across windows: no loops across them
            initial_prompt=wanted.initial_prompt or options.initial_prompt,
            hotwords=wanted.hotwords or options.hotwords,
            without_timestamps=not final,
            word_timestamps=request.word_timestamps,
            vad_filter=False,  # the VAD stage already cut speech
            no_speech_threshold=NO_SPEECH_PROB,
            log_prob_threshold=LOG_PROB,
            compression_ratio_threshold=COMPRESSION_RATIO,
        )
        kept = []
        for segment in segments:
            text = collapse_repeats(segment.text.strip())
            if not is_hallucination(text, segment.no_speech_prob, segment.avg_logprob):
                words = tuple(
                    AsrWord(w.start, w.end, w.word.strip(), w.probability) for w in (segment.words or ())
                )
                kept.append(AsrSegment(segment.start, segment.end, text, words))
        return AsrResult(tuple(kept), info.language, info.language_probability)


    def _glance(self, request: AsrRequest, language: str) -> AsrResult:
        """An interim: one greedy decode of an encoder input cut to the audio's length (at least
        INTERIM_WINDOW_S), instead of Whisper's fixed 30 s. The encoder's cost falls with its input,
        so interims cost a fraction of a final; accuracy on short windows is lower, which is fine
        for words that the final decode will replace."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        samples = request.samples
        seconds = len(samples) / SAMPLE_RATE
        if seconds > WHISPER_WINDOW_S - INTERIM_PAD_S:
            samples = samples[-int((WHISPER_WINDOW_S - INTERIM_PAD_S) * SAMPLE_RATE) :]
        length = max(len(samples) + int(INTERIM_PAD_S * SAMPLE_RATE), int(INTERIM_WINDOW_S * SAMPLE_RATE))
        padded = np.zeros(length, dtype=np.float32)
        padded[: len(samples)] = samples
        features = self.model.feature_extractor(padded, padding=0)
        features = features[:, : features.shape[-1] - features.shape[-1] % 2]  # the encoder halves frames
        task = request.options.task or self.options.task
        tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task=task, language=language)
        prompt = self.model.get_prompt(
            tokenizer, [], without_timestamps=True, hotwords=request.options.hotwords or self.options.hotwords
        )
        result = self.model.model.generate(
            self.model.encode(features),
            [prompt],
            beam_size=1,
            max_length=int(INTERIM_TOKENS_PER_S * seconds) + 16,  # no runaway loops on a short window
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, (-1,)),
        )[0]
        tokens = result.sequences_ids[0]
        text = collapse_repeats(tokenizer.decode(tokens).strip())
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if not text or is_hallucination(text, result.no_speech_prob, avg_logprob):
            return AsrResult((), language, 1.0)
        return AsrResult((AsrSegment(0.0, seconds, text),), language, 1.0)


def pick_device(requested: str) -> str:
    """`cuda` only when CTranslate2 sees a CUDA device; `auto` falls back to the CPU."""
    if requested == "cpu":
        return "cpu"
    import ctranslate2

    try:
        count = ctranslate2.get_cuda_device_count()
    except Exception:  # a broken CUDA install reports through exceptions
        count = 0
    if count > 0:
        return "cuda"
    if requested == "auto":
        return "cpu"
    raise LivecapError(
        "--gpu: CTranslate2 sees no CUDA device (no NVIDIA GPU or driver here, or CTranslate2 was built "
        "without CUDA); install the GPU extra (pip install 'livecap[gpu]') on a machine with an NVIDIA "
        "driver, or use --gpu auto to fall back to the CPU"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _load_error(name: str, path: str, error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "CUDA" in text or "cuda" in text or "cudnn" in text.lower() or "cublas" in text.lower():
        return f"cannot run {name} on CUDA: {text}"
    if os.path.isdir(path):
        return f"cannot load the model in {path}: {text}"
    return offline_hint(name) + f" ({type(error).__name__})"
