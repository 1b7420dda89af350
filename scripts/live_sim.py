"""A live stream in virtual time: the real live Segmenter, interim agreement and WhisperBackend
on a built mix, every interim and final decoded at once and charged its process CPU, the clock
being the audio's own. No thread timing and no other process changes its figures, so two settings
can be compared in a minute on a busy machine; `scripts/live_mix.py` measures the real thing.

    .venv/bin/python scripts/live_sim.py MIX.wav [--interval-ms 300] [--share 0.4]
        [--max-utterance-s 15] [--min-pause-ms 250] [--fixed-costs]

MIX.wav is a mix built by `live_mix.py` (`--reading` too), with its JSON sidecar. Prints WER
against the mix's references; word latency committed and final, p50/p95 (from the word's end in
faster-whisper's word times to its first display, as `livecap.bench.latency` defines it, here in
audio time: a decode is ready its CPU time after the audio it waited for); finals after the end
of speech; compute per audio second; the speculative (tentative) finals the live stream would
decode and how many of them it would not use. Those are counted, not decoded: a final is decoded
when its utterance closes, so final latencies read about 0.2 s later than live and the unused
speculative decodes' compute is not counted. Live finals depend on the audio alone, so the WER is
the live WER of `livecap file --realtime` under any load.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livecap.asr.base import AsrRequest, AsrResult, DecodeOptions  # noqa: E402
from livecap.asr.guards import drop_invented  # noqa: E402
from livecap.asr.models import resolve_model  # noqa: E402
from livecap.asr.pool import AsrJob  # noqa: E402
from livecap.asr.whisper import WhisperBackend  # noqa: E402
from livecap.bench.latency import faster_whisper_text, shown_words, word_latencies  # noqa: E402
from livecap.bench.mix import load_sections  # noqa: E402
from livecap.bench.wer import wer  # noqa: E402
from livecap.config import AsrConfig, LiveConfig, VadConfig  # noqa: E402
from livecap.messages import SAMPLE_RATE, AudioChunk, InterimCaption, Utterance  # noqa: E402
from livecap.pipeline.interims import Interims  # noqa: E402
from livecap.pipeline.stats import StreamStats  # noqa: E402
from livecap.pipeline.vad import Segmenter  # noqa: E402
from livecap.sources.file import decode_blocks  # noqa: E402

BLOCK = SAMPLE_RATE // 10


# With --fixed-costs a decode takes a time set by its audio's length alone (tiny.en int8 on one
# core, as measured here: an interim 0.15 s on 5 s, 0.29 s on 14 s; a final 0.23 s on 2 s, 0.28 s
# on 7 s, 0.45 s on 14 s), so that a run repeats exactly and two settings compare without the
# noise of CPU timing.
INTERIM_S, INTERIM_PER_S = 0.07, 0.016
FINAL_S, FINAL_PER_S = 0.19, 0.018


def fixed_cost(request: AsrRequest) -> float:
    seconds = len(request.samples) / SAMPLE_RATE
    if request.final:
        return FINAL_S + FINAL_PER_S * seconds
    return INTERIM_S + INTERIM_PER_S * seconds


class InstantPool:
    """Runs each interim at once on the backend; it takes its process CPU (or `fixed_cost`) of
    stream time, the clock being `now`."""

    def __init__(self, backend: WhisperBackend, fixed_costs: bool = False) -> None:
        self.backend = backend
        self.fixed_costs = fixed_costs
        self.now = self.ready_at = self.spent = 0.0

    def interim_share_for(self, wanted: float) -> float:
        return wanted

    def drop_interim(self, stream_id: str) -> None:
        pass

    def submit_interim(self, job: AsrJob) -> bool:
        result, cpu = self.decode(job.request)
        self.spent += cpu
        job.spent = self.took(job.request, cpu)
        self.ready_at = self.now + job.spent
        job.on_done(job, result, None)
        return True

    def decode(self, request: AsrRequest) -> tuple[AsrResult, float]:
        """The backend's result and the process CPU it took."""
        started = time.process_time()
        result = self.backend.transcribe(request)
        return result, time.process_time() - started

    def took(self, request: AsrRequest, cpu: float) -> float:
        """The stream time a decode takes: its process CPU, or its `fixed_cost`."""
        return fixed_cost(request) if self.fixed_costs else cpu


Finals = list[tuple[float, Utterance, AsrResult]]  # (ready at, utterance, result)
Events = list[dict[str, Any]]  # interims and finals as a live run's --jsonl would give them


@dataclass
class Simulated:
    finals: Finals = field(default_factory=list)
    events: Events = field(default_factory=list)
    final_cpu: float = 0.0
    interim_cpu: float = 0.0
    tentatives: set[tuple[float, float]] = field(default_factory=set)  # (start, end) of each

    @property
    def unused_tentatives(self) -> int:
        return len(self.tentatives - {(u.start, u.end) for _, u, _ in self.finals})


def simulate(
    audio: np.ndarray, backend: WhisperBackend, live: LiveConfig, vad: VadConfig,
    fixed_costs: bool = False,
) -> Simulated:
    """The live stream's finals and events over `audio`, with their CPU."""
    segmenter = Segmenter(vad, live=True)
    pool = InstantPool(backend, fixed_costs)
    out = Simulated()

    def shown(caption: InterimCaption) -> None:
        out.events.append({"type": "interim", "emitted_at": pool.ready_at} | caption.to_dict())

    interims = Interims(
        pool, live, stream_id="sim", decode=DecodeOptions(), stats=StreamStats(),  # type: ignore[arg-type]
        current_utterance=lambda: segmenter.next_seq, emit=shown,
    )

    def decode(utterance: Utterance, now: float) -> None:
        request = AsrRequest(
            segmenter.final_audio(utterance), final=True, word_timestamps=True, live=True
        )
        result, cpu = pool.decode(request)
        # what the delivery stage keeps of it: words written over the pause after the speech go
        result = replace(result, segments=drop_invented(result.segments, utterance.past_speech))
        out.final_cpu += cpu
        ready = now + pool.took(request, cpu)
        out.finals.append((ready, utterance, result))
        words = [
            dict(zip(("start", "end"), utterance.span_to_stream(w.start, w.end)), word=w.word)
            for segment in result.segments
            for w in segment.words
        ]
        out.events.append(
            {"type": "final", "utterance": utterance.seq, "emitted_at": ready, "words": words}
        )

    for index in range(0, len(audio), BLOCK):
        now = pool.now = (index + BLOCK) / SAMPLE_RATE
        chunk = AudioChunk(audio[index : index + BLOCK], index / SAMPLE_RATE, now)
        for utterance in segmenter.push(chunk, now):
            interims.cut(continued=utterance.continued)
            decode(utterance, now)
        interims.offer(now, segmenter.open_utterance)
        tentative = segmenter.tentative(now)  # the live stream decodes it speculatively
        if tentative is not None:
            out.tentatives.add((tentative.start, tentative.end))
    end = len(audio) / SAMPLE_RATE
    for utterance in segmenter.flush(end):
        decode(utterance, end)
    out.events.sort(key=lambda event: event["emitted_at"])
    out.interim_cpu = pool.spent
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mix", type=Path)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--interval-ms", type=int, default=LiveConfig().interim_interval_ms)
    parser.add_argument("--share", type=float, default=LiveConfig().interim_share)
    parser.add_argument("--max-utterance-s", type=float, default=VadConfig().max_utterance_s)
    parser.add_argument("--min-pause-ms", type=int, default=VadConfig().min_pause_ms)
    parser.add_argument(
        "--fixed-costs", action="store_true",
        help="decodes take a time set by their audio's length (runs repeat exactly)",
    )
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    reference = faster_whisper_text(
        WhisperModel(resolve_model(args.model), device="cpu", compute_type="int8"),
        args.mix, word_timestamps=True, beam_size=1, vad_filter=False, language="en",
    )[1]
    backend = WhisperBackend(AsrConfig(model=args.model, workers=1, cpu_threads=1))
    audio = np.concatenate(list(decode_blocks(args.mix)))
    live = LiveConfig(interim_interval_ms=args.interval_ms, interim_share=args.share)
    vad = VadConfig(max_utterance_s=args.max_utterance_s, min_pause_ms=args.min_pause_ms)
    run = simulate(audio, backend, live, vad, args.fixed_costs)
    sections = load_sections(args.mix)
    truth = " ".join(s.reference for s in sections if s.kind == "speech" and s.reference)
    text = " ".join(segment.text for _, _, result in run.finals for segment in result.segments)
    latency = word_latencies(reference, shown_words(run.events))
    after_speech = [ready - utterance.t_speech_end for ready, utterance, _ in run.finals]
    seconds = len(audio) / SAMPLE_RATE

    def pct(values: list[float]) -> str:
        return f"{np.percentile(values, 50):.2f} / {np.percentile(values, 95):.2f}"

    print(
        f"WER {wer(truth, text):.2%} | committed {pct(latency['committed'])} s | final "
        f"{pct(latency['final'])} s | finals after speech {pct(after_speech)} s | compute "
        f"{(run.final_cpu + run.interim_cpu) / seconds:.3f} ({run.final_cpu / seconds:.3f} final + "
        f"{run.interim_cpu / seconds:.3f} interim) | {len(latency['final'])} words timed | "
        f"{len(run.finals)} finals, {len(run.tentatives)} tentative ({run.unused_tentatives} not "
        "used)"
    )


if __name__ == "__main__":
    main()
