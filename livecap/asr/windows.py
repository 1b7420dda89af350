"""The batched window loop: faster-whisper's `generate_segments` for several finals at once.

Each round encodes every unfinished final's next 30 s window and decodes them in one CTranslate2
call, each with its own language, task, prompt and hotwords (its own prompt tokens). The steps
around the call are faster-whisper's own for one window (`add_word_timestamps`, and the cutting of
a window's tokens at its timestamps, which `split_at_timestamps` owns), with its options and
guards; the rare window that fails the checks is decoded again alone (`_fallback`), by beam search
instead of faster-whisper's random sampling, so the same audio always gives the same caption.
The faster-whisper methods called here are pinned by the version range in pyproject.toml and
checked in tests/test_batching.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from livecap.asr.base import AsrRequest, AsrResult, AsrSegment, AsrWord
from livecap.asr.decoding import (
    APPEND_PUNCTUATIONS,
    FALLBACK_DECODES,
    FINAL_INPUT,
    PREPEND_PUNCTUATIONS,
    hotwords_of,
    initial_prompt_of,
    requested_language,
    task_of,
    window_options,
)
from livecap.asr.guards import (
    COMPRESSION_RATIO,
    collapse_repeats,
    compression_ratio,
    is_hallucination,
    is_silent_window,
    needs_fallback,
)
from livecap.config import AsrConfig

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import TranscriptionOptions


class WindowLoop:
    """The loop over one batch of finals, on one loaded model with the configured options."""

    def __init__(
        self, model: WhisperModel, config: AsrConfig, device: str, multilingual: bool
    ) -> None:
        self.model, self.config, self.device, self.multilingual = (
            model,
            config,
            device,
            multilingual,
        )
        self._options: TranscriptionOptions | None = None  # built from the first tokenizer

    def run(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        """Every request decoded window by window, all unfinished ones together in each round."""
        items = [Pending(r, self.model.feature_extractor(r.samples)) for r in requests]
        active = [item for item in items if item.seek < item.frames]
        while active:
            self._round(active)
            active = [item for item in active if item.seek < item.frames]
        return [item.result() for item in items]

    def _round(self, active: list[Pending]) -> None:
        """One window of each active final; windows of one encoder input length go together."""
        features = self.model.feature_extractor
        per_second = round(1 / features.time_per_frame)
        whole = features.nb_max_frames  # Whisper's 30 s: a file's window keeps it
        by_input: dict[int, list[tuple[Pending, int]]] = {}
        for item in active:
            size = min(whole, item.frames - item.seek)
            frames = FINAL_INPUT.length(size, per_second) if item.request.live else whole
            by_input.setdefault(frames, []).append((item, size))
        for frames, windows in by_input.items():
            self._windows([item for item, _ in windows], [size for _, size in windows], frames)

    def _windows(self, active: list[Pending], sizes: list[int], frames: int) -> None:
        """Windows of `sizes` content frames, on an encoder input of `frames`: encoded, started
        when new, decoded, advanced. The input is the window's audio and a little silence
        for a live final (`FINAL_INPUT`): one of a few seconds is not encoded as 30."""
        from faster_whisper.audio import pad_or_trim

        encoded = self.encode(
            np.stack(
                [
                    pad_or_trim(item.features[:, item.seek : item.seek + n], frames)
                    for item, n in zip(active, sizes)
                ]
            )
        )
        self._start_new(active, encoded)
        prompts = [
            self.model.get_prompt(
                item.tokenizer, item.previous, hotwords=hotwords_of(item.request, self.config)
            )
            for item in active
        ]
        outputs = self._generate(active, encoded, prompts)
        for k, (item, size, output, prompt) in enumerate(zip(active, sizes, outputs, prompts)):
            self._advance(item, size, output, prompt, as_storage(encoded[k : k + 1]))

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Encoder outputs of a batch of windows of one length, in host memory (one window's
        output is needed alone for word alignment and the temperature fallback). On CUDA one call
        for all; on the CPU one window at a time, which costs less CPU there than a batched encode
        (README, Batched ASR); the decoder gains."""

        def encode(features: np.ndarray) -> np.ndarray:
            to_cpu = self.device != "cpu"
            return np.asarray(self.model.model.encode(as_storage(features), to_cpu=to_cpu))

        if self.device != "cpu":
            return encode(windows)
        return np.concatenate([encode(window[None]) for window in windows])

    def _start_new(self, active: list[Pending], encoded: np.ndarray) -> None:
        """Give each final new to the loop its language (asked for, configured, or detected from
        its first window's encoding, which `transcribe` encodes once more for that), tokenizer and
        initial prompt."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        def unknown_language(item: Pending) -> bool:
            return requested_language(item.request, self.config, self.multilingual) is None

        unknown = [
            k for k, item in enumerate(active) if item.tokenizer is None and unknown_language(item)
        ]
        detected = (
            dict(zip(unknown, self.model.model.detect_language(as_storage(encoded[unknown]))))
            if unknown
            else {}
        )
        for k, item in enumerate(active):
            if item.tokenizer is not None:
                continue
            item.language = requested_language(item.request, self.config, self.multilingual) or ""
            if k in detected:
                item.language, item.probability = detected[k][0][0][2:-2], detected[k][0][1]
            item.tokenizer = Tokenizer(
                self.model.hf_tokenizer,
                self.multilingual,
                task=task_of(item.request, self.config),
                language=item.language,
            )
            initial = initial_prompt_of(item.request, self.config)
            item.previous = item.tokenizer.encode(" " + initial.strip()) if initial else []
            if self._options is None:
                self._options = window_options(
                    self.config.beam_size, get_suppressed_tokens(item.tokenizer, [-1])
                )

    def _generate(
        self, active: list[Pending], encoded: np.ndarray, prompts: list[list[int]]
    ) -> list[Any]:
        """One decode of every active window. CTranslate2 wants <|startoftranscript|> at one
        position in a call: one call for each length of prompt text (no initial prompt or
        hotwords: all in one call)."""
        options, model = self._options, self.model
        assert options is not None
        outputs: list[Any] = [None] * len(active)
        groups: dict[int, list[int]] = {}
        for k, (item, prompt) in enumerate(zip(active, prompts)):
            groups.setdefault(prompt.index(item.tokenizer.sot), []).append(k)
        for group in groups.values():
            decoded = model.model.generate(
                as_storage(encoded[group]),
                [prompts[k] for k in group],
                beam_size=options.beam_size,
                **self._decode_settings(),
            )
            for k, output in zip(group, decoded):
                outputs[k] = output
        return outputs

    def _decode_settings(self) -> dict[str, Any]:
        """What every `generate` call of this batch asks, the first decode and the fallbacks."""
        options, model = self._options, self.model
        assert options is not None
        return {
            "max_length": model.max_length,
            "return_scores": True,
            "return_no_speech_prob": True,
            "suppress_blank": options.suppress_blank,
            "suppress_tokens": list(options.suppress_tokens),
            "max_initial_timestamp_index": round(
                options.max_initial_timestamp / model.time_precision
            ),
        }

    def _advance(self, item: Pending, size: int, output: Any, prompt: list[int], own: Any) -> None:
        """Judge one window's decode (fallback, no-speech skip), keep its segments and move the
        final's seek past them, as faster-whisper does for a file."""
        model, tokenizer = self.model, item.tokenizer
        assert tokenizer is not None
        tokens = output.sequences_ids[0]
        avg_logprob = output.scores[0] * len(tokens) / (len(tokens) + 1)
        if needs_fallback(output.no_speech_prob, avg_logprob, tokenizer.decode(tokens).strip()):
            output, avg_logprob = self._fallback(own, prompt, tokenizer, (output, avg_logprob))
            tokens = output.sequences_ids[0]
        if is_silent_window(output.no_speech_prob, avg_logprob):
            item.seek += size  # no speech in this window: skipped, as faster-whisper does
            return
        frame_s = model.feature_extractor.time_per_frame
        segments, seek, single_ending = split_at_timestamps(
            tokens, tokenizer.timestamp_begin, item.seek, size, frame_s, model.time_precision,
            model.input_stride,
        )
        if item.request.word_timestamps:
            seek = self._align_words(item, segments, seek, single_ending, size, own)
        item.seek = seek
        item.previous = []  # no context carried across windows, as in `transcribe`
        for segment in segments:
            text = tokenizer.decode(segment["tokens"])
            if segment["start"] != segment["end"] and text.strip():
                item.keep(
                    segment, collapse_repeats(text.strip()), output.no_speech_prob, avg_logprob
                )

    def _fallback(
        self, own: Any, prompt: list[int], tokenizer: Tokenizer, first: tuple[Any, float]
    ) -> tuple[Any, float]:
        """faster-whisper's fallback made deterministic (`FALLBACK_DECODES`): the first decode
        that passes the checks is kept, else the most probable one that is not too repetitive, as
        faster-whisper picks among its samples."""
        model = self.model
        tried = [first]
        for settings in FALLBACK_DECODES:
            output = model.model.generate(own, [prompt], **self._decode_settings(), **settings)[0]
            tokens = output.sequences_ids[0]
            tried.append((output, output.scores[0] * len(tokens) / (len(tokens) + 1)))
            if not needs_fallback(
                output.no_speech_prob, tried[-1][1], tokenizer.decode(tokens).strip()
            ):
                return tried[-1]

        def varied(attempt: tuple[Any, float]) -> bool:
            return (
                compression_ratio(tokenizer.decode(attempt[0].sequences_ids[0]).strip())
                <= COMPRESSION_RATIO
            )

        return max([t for t in tried if varied(t)] or tried, key=lambda t: t[1])

    def _align_words(
        self,
        item: Pending,
        segments: list[dict[str, Any]],
        seek: int,
        single_ending: bool,
        size: int,
        own: Any,
    ) -> int:
        """Word times for a window's segments; the next window starts after the last word when
        the window's end was cut."""
        from faster_whisper.utils import get_end

        model = self.model
        model.add_word_timestamps(
            [segments], item.tokenizer, own, size, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS,
            item.last_speech,
        )
        last_word_end = get_end(segments)
        offset = item.seek * model.feature_extractor.time_per_frame
        if not single_ending and last_word_end is not None and last_word_end > offset:
            seek = round(last_word_end * model.frames_per_second)
        if last_word_end is not None:
            item.last_speech = last_word_end
        return seek


def as_storage(array: np.ndarray) -> ctranslate2.StorageView:
    """A CTranslate2 view of a contiguous copy of `array`."""
    import ctranslate2

    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))


class Pending:
    """One final in the loop: the state faster-whisper's window loop keeps for a file."""

    def __init__(self, request: AsrRequest, features: np.ndarray) -> None:
        self.request = request
        self.features = features
        self.frames = features.shape[-1] - 1  # content frames, counted as faster-whisper does
        self.seek = 0
        self.last_speech = 0.0
        # prompt tokens: the initial prompt, for the first window only
        self.previous: list[int] = []
        self.tokenizer: Tokenizer | None = None
        self.language = "en"
        self.probability = 1.0
        self.segments: list[AsrSegment] = []

    def keep(self, segment: dict, text: str, no_speech_prob: float, avg_logprob: float) -> None:
        """Add a decoded segment unless the guards call it a hallucination."""
        if not is_hallucination(text, no_speech_prob, avg_logprob):
            start, end = segment["start"], segment["end"]
            # faster-whisper may stretch a too-long last word past its segment's end: keep it inside
            def inside(t: float) -> float:
                return min(max(t, start), end)

            words = tuple(
                AsrWord(inside(w["start"]), inside(w["end"]), w["word"].strip(), w["probability"])
                for w in segment.get("words") or ()
            )
            self.segments.append(AsrSegment(start, end, text, words))

    def result(self) -> AsrResult:
        """What the loop decoded for this final."""
        return AsrResult(tuple(self.segments), self.language, self.probability)


def split_at_timestamps(
    tokens: list[int],
    timestamp_begin: int,
    seek: int,
    size: int,
    frame_s: float,
    time_precision: float,
    input_stride: int,
) -> tuple[list[dict[str, Any]], int, bool]:
    """A window's tokens cut into segments at its timestamp tokens, as Whisper does: the segments
    (seek, start, end, tokens), where the next window starts (`seek`, in feature frames of
    `frame_s`), and whether the window ended on a single timestamp (no speech after it). An
    unfinished last segment is dropped and the next window starts at its beginning; a window
    without a pair of timestamps is one segment."""
    offset = seek * frame_s
    single_ending = len(tokens) >= 2 and tokens[-2] < timestamp_begin <= tokens[-1]
    pairs = [
        i
        for i in range(1, len(tokens))
        if tokens[i] >= timestamp_begin and tokens[i - 1] >= timestamp_begin
    ]
    if not pairs:
        stamps = [t for t in tokens if t >= timestamp_begin]
        duration = size * frame_s
        if stamps and stamps[-1] != timestamp_begin:
            duration = (stamps[-1] - timestamp_begin) * time_precision
        return (
            [{"seek": seek, "start": offset, "end": offset + duration, "tokens": tokens}],
            seek + size,
            single_ending,
        )
    segments, last = [], 0
    for cut in (pairs + [len(tokens)]) if single_ending else pairs:
        piece = tokens[last:cut]
        start, end = (
            offset + (t - timestamp_begin) * time_precision for t in (piece[0], piece[-1])
        )
        segments.append({"seek": seek, "start": start, "end": end, "tokens": piece})
        last = cut
    if single_ending:
        return segments, seek + size, True
    return segments, seek + (tokens[last - 1] - timestamp_begin) * input_stride, False
