"""The ASR backend: faster-whisper (CTranslate2), one model shared by all workers.

CTranslate2 releases the GIL, so worker threads decode in parallel on one loaded model
(`num_workers`). Guards drop Whisper's known failure modes: text on silence or noise, and
repetition loops. `transcribe_batch` decodes several finals (of any streams, in any languages) in
one CTranslate2 call per round of 30 s windows, with the same steps, options and guards.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from livecap.asr.base import AsrRequest, AsrResult, AsrSegment, AsrWord
from livecap.asr.models import offline_hint, resolve_model
from livecap.config import AsrConfig
from livecap.errors import LivecapError
from livecap.messages import SAMPLE_RATE

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import TranscriptionOptions

logger = logging.getLogger(__name__)

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
# faster-whisper's defaults for attaching punctuation to words
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def compression_ratio(text: str) -> float:
    """Bytes per zlib-compressed byte: high for repetition loops."""
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
        self.batch_size = options.batch_size or (  # 0: by device, once the model holds its memory
            CPU_BATCH
            if device == "cpu"
            else batch_size_for_memory(cuda_free_bytes(), batch_item_bytes(options.model, options.beam_size))
        )
        if options.language and not self.multilingual and options.language != "en":
            raise LivecapError(
                f"model {options.model} is English-only; use --model base for --language {options.language}"
            )
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
                words = tuple(AsrWord(w.start, w.end, w.word.strip(), w.probability) for w in (segment.words or ()))
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

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult | Exception]:
        """Finals of any streams decoded together: each round encodes every unfinished final's
        next 30 s window and decodes them in one CTranslate2 call, each with its own language,
        task, prompt and hotwords (its own prompt tokens). The steps around the call are
        faster-whisper's own for one window (`_split_segments_by_timestamps`,
        `add_word_timestamps`, `generate_with_fallback` for the rare window that needs a higher
        temperature, alone), so a caption is the one `transcribe` gives; a lone final gains too
        when its language is detected (one encode of the window, where `transcribe` makes two).
        Interims go alone through `transcribe`. A failing batch sends each request alone: one bad
        item fails only itself."""
        results: list[AsrResult | Exception | None] = [None] * len(requests)
        finals = [i for i, r in enumerate(requests) if r.final]
        if finals:  # even one: with its language detected, it is encoded once, not twice
            try:
                for i, result in zip(finals, self._decode_together([requests[i] for i in finals])):
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

    def _encode(self, windows: np.ndarray) -> np.ndarray:
        """Encoder outputs of a batch of 30 s windows, in host memory (one window's output is
        needed alone for word alignment and the temperature fallback). On CUDA one call for all;
        on the CPU one window at a time: measured on 2 cores (tiny.en, int8), a batched encode
        took about 25 % more CPU time than the same windows one by one; the decoder gains."""
        import ctranslate2

        def encode(features: np.ndarray) -> np.ndarray:
            view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features))
            return np.asarray(self.model.model.encode(view, to_cpu=self.device != "cpu"))

        if self.device != "cpu":
            return encode(windows)
        return np.concatenate([encode(window[None]) for window in windows])

    def _decode_together(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        """faster-whisper's window loop (`generate_segments`) for several finals at once, with
        `transcribe`'s options and guards."""
        import ctranslate2
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens
        from faster_whisper.utils import get_end

        def view(array: np.ndarray) -> ctranslate2.StorageView:
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))

        model, config = self.model, self.options
        frame_s = model.feature_extractor.time_per_frame
        items = [_Pending(r, model.feature_extractor(r.samples)) for r in requests]
        options: TranscriptionOptions | None = None
        active = [item for item in items if item.seek < item.frames]
        while active:
            sizes = [min(model.feature_extractor.nb_max_frames, item.frames - item.seek) for item in active]
            encoded = self._encode(
                np.stack([pad_or_trim(item.features[:, item.seek : item.seek + n]) for item, n in zip(active, sizes)])
            )
            unknown = [
                k for k, item in enumerate(active) if item.tokenizer is None and self._language(item.request) is None
            ]
            detected = dict(zip(unknown, model.model.detect_language(view(encoded[unknown])))) if unknown else {}
            for k, item in enumerate(active):
                if item.tokenizer is None:
                    self._start(item, detected.get(k))
                    options = options or _window_options(config.beam_size, get_suppressed_tokens(item.tokenizer, [-1]))
            assert options is not None
            prompts = [
                model.get_prompt(
                    item.tokenizer, item.previous, hotwords=item.request.options.hotwords or config.hotwords
                )
                for item in active
            ]
            outputs: list = [None] * len(active)
            # CTranslate2 wants <|startoftranscript|> at one position in a call: one call for each
            # length of prompt text (no initial prompt or hotwords: all in one call)
            groups: dict[int, list[int]] = {}
            for k, (item, prompt) in enumerate(zip(active, prompts)):
                groups.setdefault(prompt.index(item.tokenizer.sot), []).append(k)
            for group in groups.values():
                decoded = model.model.generate(
                    view(encoded[group]),
                    [prompts[k] for k in group],
                    beam_size=options.beam_size,
                    max_length=model.max_length,
                    return_scores=True,
                    return_no_speech_prob=True,
                    suppress_blank=options.suppress_blank,
                    suppress_tokens=list(options.suppress_tokens),
                    max_initial_timestamp_index=round(options.max_initial_timestamp / model.time_precision),
                )
                for k, output in zip(group, decoded):
                    outputs[k] = output
            for k, (item, size, output, prompt) in enumerate(zip(active, sizes, outputs, prompts)):
                tokenizer = item.tokenizer
                own = view(encoded[k : k + 1])
                tokens = output.sequences_ids[0]
                avg_logprob = output.scores[0] * len(tokens) / (len(tokens) + 1)
                if _needs_fallback(output.no_speech_prob, avg_logprob, tokenizer.decode(tokens).strip()):
                    output, avg_logprob, _, _ = model.generate_with_fallback(own, prompt, tokenizer, options)
                    tokens = output.sequences_ids[0]
                if output.no_speech_prob > NO_SPEECH_PROB and not avg_logprob > LOG_PROB:
                    item.seek += size  # no speech in this window: skipped, as faster-whisper does
                    continue
                offset = item.seek * frame_s
                segments, seek, single_ending = model._split_segments_by_timestamps(
                    tokenizer, tokens, offset, size, size * frame_s, item.seek
                )
                if item.request.word_timestamps:
                    model.add_word_timestamps(
                        [segments], tokenizer, own, size, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS, item.last_speech
                    )
                    last_word_end = get_end(segments)
                    if not single_ending and last_word_end is not None and last_word_end > offset:
                        seek = round(last_word_end * model.frames_per_second)
                    if last_word_end is not None:
                        item.last_speech = last_word_end
                item.seek = seek
                item.previous = []  # no context carried across windows, as in `transcribe`
                for segment in segments:
                    text = tokenizer.decode(segment["tokens"])
                    if segment["start"] != segment["end"] and text.strip():
                        item.keep(segment, collapse_repeats(text.strip()), output.no_speech_prob, avg_logprob)
            active = [item for item in active if item.seek < item.frames]
        return [AsrResult(tuple(item.segments), item.language, item.probability) for item in items]

    def _language(self, request: AsrRequest) -> str | None:
        """The language a request asks for, or the configured one; None: to be detected."""
        return (request.options.language or self.options.language) if self.multilingual else "en"

    def _start(self, item: _Pending, detected: list[tuple[str, float]] | None) -> None:
        """A final's language (asked for, configured, or detected from its first window's
        encoding, which `transcribe` encodes once more for that), tokenizer and initial prompt."""
        from faster_whisper.tokenizer import Tokenizer

        wanted = item.request.options
        item.language = self._language(item.request) or ""
        if detected is not None:
            item.language, item.probability = detected[0][0][2:-2], detected[0][1]
        item.tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task=wanted.task or self.options.task, language=item.language
        )
        initial = wanted.initial_prompt or self.options.initial_prompt
        item.previous = item.tokenizer.encode(" " + initial.strip()) if initial else []


FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # `transcribe`'s, for finals


class _Pending:
    """One final in `transcribe_batch`: the state faster-whisper's window loop keeps for a file."""

    def __init__(self, request: AsrRequest, features: np.ndarray) -> None:
        self.request = request
        self.features = features
        self.frames = features.shape[-1] - 1  # content frames, counted as faster-whisper does
        self.seek = 0
        self.last_speech = 0.0
        self.previous: list[int] = []  # prompt tokens: the initial prompt, for the first window only
        self.tokenizer: Tokenizer | None = None
        self.language = "en"
        self.probability = 1.0
        self.segments: list[AsrSegment] = []

    def keep(self, segment: dict, text: str, no_speech_prob: float, avg_logprob: float) -> None:
        """Add a decoded segment unless the guards call it a hallucination."""
        if not is_hallucination(text, no_speech_prob, avg_logprob):
            words = tuple(
                AsrWord(w["start"], w["end"], w["word"].strip(), w["probability"]) for w in segment.get("words") or ()
            )
            self.segments.append(AsrSegment(segment["start"], segment["end"], text, words))


def _needs_fallback(no_speech_prob: float, avg_logprob: float, text: str) -> bool:
    """faster-whisper's test after a temperature-0 decode: too repetitive or too unsure, unless silent."""
    if no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOG_PROB:
        return False
    return compression_ratio(text) > COMPRESSION_RATIO or avg_logprob < LOG_PROB


def _window_options(beam_size: int, suppress_tokens: tuple[int, ...]) -> TranscriptionOptions:
    """The options `transcribe` gives faster-whisper for a final, for its per-window steps."""
    from faster_whisper.transcribe import TranscriptionOptions

    return TranscriptionOptions(
        beam_size=beam_size,
        best_of=beam_size,
        patience=1,
        length_penalty=1,
        repetition_penalty=1,
        no_repeat_ngram_size=0,
        log_prob_threshold=LOG_PROB,
        no_speech_threshold=NO_SPEECH_PROB,
        compression_ratio_threshold=COMPRESSION_RATIO,
        condition_on_previous_text=False,
        prompt_reset_on_temperature=0.5,
        temperatures=list(FALLBACK_TEMPERATURES),
        initial_prompt=None,
        prefix=None,
        suppress_blank=True,
        suppress_tokens=list(suppress_tokens),
        without_timestamps=False,
        max_initial_timestamp=1.0,
        word_timestamps=False,
        prepend_punctuations=PREPEND_PUNCTUATIONS,
        append_punctuations=APPEND_PUNCTUATIONS,
        multilingual=False,
        max_new_tokens=None,
        clip_timestamps="0",
        hallucination_silence_threshold=None,
        hotwords=None,
    )


# Batch size chosen by the device (`batch_size = 0`)
# On 2 CPU cores (tiny.en, int8) a batch did not shorten a 7-minute file (scripts/batch_bench.py):
# the encoder, most of the work, runs one window at a time there; multilingual models with the
# language detected gain (about 30 % less CPU): the detection reuses the window's encoding.
CPU_BATCH = 4
UNKNOWN_MEMORY_BATCH = 4
MAX_BATCH = 16
GPU_MEMORY_SHARE = 0.8  # of the free memory, the rest left for CUDA's own workspace
# (d_model, decoder layers, attention heads) by model family, largest first where a name has two
_DIMS = {
    "large": (1280, 32, 20),
    "turbo": (1280, 4, 20),
    "medium": (1024, 24, 16),
    "small": (768, 12, 12),
    "base": (512, 6, 8),
    "tiny": (384, 4, 6),
}


def batch_item_bytes(model: str, beam_size: int) -> int:
    """A float16 estimate of what one more item of a batch holds on the GPU: encoder attention and
    activations (1500 frames), and per beam hypothesis the decoder's self- and cross-attention
    caches (448 + 1500 positions per layer). Unknown names count as large models."""
    name = model.lower()
    d_model, layers, heads = next(
        (dims for family, dims in _DIMS.items() if family in name and not (family == "large" and "turbo" in name)),
        _DIMS["large"],
    )
    encoder = heads * 1500 * 1500 + 8 * 1500 * d_model
    caches = beam_size * 2 * layers * (1500 + 448) * d_model
    return 2 * (encoder + caches)


def batch_size_for_memory(free_bytes: int | None, item_bytes: int) -> int:
    """How many finals one CUDA call may take: as many items as fit in GPU_MEMORY_SHARE of the
    free memory (measured once the model is loaded), 1 to MAX_BATCH; UNKNOWN_MEMORY_BATCH when unknown."""
    if free_bytes is None:
        return UNKNOWN_MEMORY_BATCH
    return max(1, min(MAX_BATCH, int(free_bytes * GPU_MEMORY_SHARE) // item_bytes))


def cuda_free_bytes(device_index: int = 0) -> int | None:
    """Free memory of a CUDA device, through NVML (pynvml) or nvidia-smi; None when neither answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(device_index)).free)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: S110 - no NVML binding or driver: try the command line
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", f"--id={device_index}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


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
