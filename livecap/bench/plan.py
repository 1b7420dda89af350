"""What `livecap bench` measures (real-time factor, latency and accuracy, side by side with plain
faster-whisper), and its inputs and configurations.

Every configuration (a combination of the comma lists given to --model, --compute-type, --workers,
--beam-size and --device) runs `--repeat` times; each run loads its model in a fresh process, so
load time and peak RSS belong to that run alone. A run measures, on the same audio:

- offline (file mode, as `livecap file`): the whole pipeline's wall time, and each stage alone:
  decoding (`decode_blocks`), VAD (a fresh `Segmenter` on the decoded audio), ASR busy time (summed
  over workers during the real pipeline run, so it can exceed the wall time with several workers)
  and translation busy time. RTF = seconds / audio seconds. WER (livecap.bench.wer.normalize, then
  jiwer over all files at once) where references exist.
- non-speech: words emitted on a generated 12 s clip with no speech in it (2 s digital silence,
  4 s white noise, 4 s brown noise, 2 s silence): every word there is a hallucination.
- live (as `livecap file --realtime`; on by default, `--no-live` skips it): files replayed at 1x
  through the live pipeline, at most `--live-limit` (60) seconds of audio in all per run, since it
  takes that long in real time; the last file replayed may be cut at the limit. Final-caption
  latency (last speech sample captured -> caption shown), split into end-of-speech wait and
  processing; interim latency; dropped audio; the deepest queues seen (sampled every 0.25 s).
- baseline: `WhisperModel(...).transcribe(file, beam_size, vad_filter=True)` with the same model,
  device, compute type, threads and beam size, one file after the other, in its own process.

JSON (`--json FILE`): {"machine": {...}, "command": str, "inputs": [{"path", "duration_s",
"reference", "language" (from a manifest)}], "repeat": int, "live_limit_s": float,
"configurations": [config]}. A config has
"label", "settings" (model, device, compute_type, workers, beam_size, cpu_threads, language,
translate_to, compute_type_used), "runs" (each repeat's raw figures: {"livecap": {...},
"baseline": {...}}), "summary" ({figure: {"median", "min", "max"}}) and "ratio" (livecap /
baseline of the medians: "wall_s", "wer"; null when the baseline's is 0). Figures in "summary"
(seconds unless named otherwise; null when not measured):
  load_s, first_caption_s (run start -> first caption, first file, offline), audio_s, wall_s, rtf,
  decode_s, vad_s, asr_s, translate_s, rtf_decode, rtf_vad, rtf_asr, rtf_translate, wer, wer_<lang>
  and baseline_wer_<lang> (pooled over the inputs of each known language), insertions (words, from
  the WER alignment), nonspeech_words, peak_rss_mb, live_audio_s, final_p50, final_p95, final_max,
  eos_wait_p50, eos_wait_p95, eos_wait_max, processing_p50, processing_p95, processing_max,
  interim_p50, dropped_s, max_pending_finals, max_capture_s, max_behind_s (age of the oldest
  unfinished speech), live_first_caption_s, live_rtf, live_rtf_final, live_rtf_interim (all compute
  of the live replay per audio second: finals, interims, translation), live_wer (files replayed
  whole), word_committed_p50/p95 and word_final_p50/p95 (spoken -> first shown committed / shown
  final, against faster-whisper's word times without VAD; see livecap.bench.latency),
  baseline_load_s, baseline_wall_s, baseline_rtf, baseline_wer, baseline_insertions,
  baseline_novad_wer, baseline_novad_rtf (faster-whisper without VAD, with word timestamps: the
  reference word times), baseline_nonspeech_words, baseline_peak_rss_mb.
With `--mix MINUTES`, the inputs (files with references, or a manifest) are first built into one
long mix (livecap.bench.mix: speakers loud, quiet, far, reverberant; pauses; silence, noise
and buzz), which is measured as a single input; give `--live-limit` its length to replay it whole.
Each run's raw record also keeps per-file texts ("files": [{"path", "audio_s", "wall_s", ...,
"text", "reference"}]) and, in live mode, every final caption's latency breakdown ("latencies").
"""

from __future__ import annotations

import csv
import itertools
import os
import platform
from pathlib import Path
from typing import Any

from livecap.bench.run import Item
from livecap.config import Config, resolve
from livecap.errors import LivecapError

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.flac"
LIVE_LIMIT_S = 60.0
NONSPEECH_S = (2.0, 4.0, 4.0, 2.0)  # silence, white noise, brown noise, silence

# -- inputs -----------------------------------------------------------------------------------


def load_inputs(args: list[Path]) -> list[Item]:
    """Files (references from `<file>.txt` beside them), a manifest.tsv, or the bundled sample."""
    from livecap.sources.file import probe_duration

    if not args:
        args = [SAMPLE]
    rows: list[tuple[Path, str | None, str | None]] = []
    for arg in args:
        if arg.suffix == ".tsv":
            rows += _read_manifest(arg)
        else:
            reference = arg.with_name(arg.name + ".txt")
            rows.append(
                (
                    arg,
                    reference.read_text(encoding="utf-8").strip() if reference.is_file() else None,
                    None,
                )
            )
    return [Item(path, ref, probe_duration(path) or 0.0, language) for path, ref, language in rows]


def mix_item(items: list[Item], minutes: float, folder: Path, *, reading: bool = False) -> Item:
    """One long mix built from the inputs that have references (see livecap.bench.mix); with
    `reading`, a continuous reading from those of them long enough."""
    from livecap.bench.mix import READING_MIN_S, build_mix, build_reading

    if reading:
        items = [i for i in items if i.duration >= READING_MIN_S]
        if not any(i.reference for i in items):
            raise LivecapError(
                f"--reading needs inputs of {READING_MIN_S:g} s or more with references"
            )
    clips = [(i.path, i.reference) for i in items if i.reference]
    languages = {i.language for i in items if i.reference}
    path = folder / f"{'reading' if reading else 'mix'}-{minutes:g}min.wav"
    sections = (build_reading if reading else build_mix)(clips, path, minutes=minutes)
    reference = " ".join(s.reference for s in sections if s.kind == "speech" and s.reference)
    return Item(path, reference, sections[-1].end, languages.pop() if len(languages) == 1 else None)


def _read_manifest(path: Path) -> list[tuple[Path, str | None, str | None]]:
    """Rows of a manifest in the format of shared/audio/manifest.tsv:
    file, language, ..., reference_text."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as error:
        raise LivecapError(f"{path}: cannot read ({error.strerror or error})") from None
    if not rows or "file" not in rows[0]:
        raise LivecapError(f"{path}: not a manifest (a tab-separated table with a 'file' column)")
    return [
        (
            path.parent / row["file"],
            (row.get("reference_text") or "").strip() or None,
            row.get("language") or None,
        )
        for row in rows
    ]


def configurations(
    profile: str | None, sweeps: dict[str, str | None], fixed: dict[str, Any]
) -> list[Config]:
    """One resolved Config per combination of the comma lists in `sweeps`."""
    axes = {
        key: [v.strip() for v in value.split(",") if v.strip()]
        for key, value in sweeps.items()
        if value
    }
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] or [{}]
    return [resolve(profile, {**fixed, **combo}).config for combo in combos]


def check_configurations(configs: list[Config]) -> None:
    """Fail before measuring anything when a configuration cannot run: every model must resolve (a
    shipped model, a model directory, a faster-whisper name; offline, only what is on disk), and a
    CUDA device must be there when one is asked for."""
    from faster_whisper import available_models

    from livecap.asr.device import pick_device
    from livecap.asr.models import offline_hint, resolve_model

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    for name in dict.fromkeys(c.asr.model for c in configs):
        if resolve_model(name) != name or Path(name).expanduser().is_dir():
            continue  # on disk
        if offline:
            raise LivecapError(offline_hint(name))
        if "/" not in name and name not in available_models():
            raise LivecapError(
                f"unknown model {name!r}: not a model directory, a hub id (owner/name) or a "
                f"faster-whisper name ({', '.join(available_models())})"
            )
    for device in dict.fromkeys(c.asr.device for c in configs):
        pick_device(device)


SETTINGS = {
    "model": "{}",
    "device": "{}",
    "compute_type": "{}",
    "workers": "w{}",
    "beam_size": "beam {}",
    "batch_size": "batch {}",
}


def varying(configs: list[Config]) -> list[str]:
    """The settings that differ between configurations (the model is always named)."""
    return [
        key for key in SETTINGS if key == "model" or len({getattr(c.asr, key) for c in configs}) > 1
    ]


def label(config: Config, keys: list[str]) -> str:
    """A configuration's name in tables: the model and the settings that vary."""
    return " ".join(SETTINGS[key].format(getattr(config.asr, key)) for key in keys)


def write_nonspeech(path: Path) -> Path:
    """The non-speech clip: silence, white noise, brown
    noise, silence (seeded, so always the same)."""
    import numpy as np

    from livecap.bench.mix import nonspeech, write_wav

    rng = np.random.default_rng(0)
    quiet, white, brown, tail = NONSPEECH_S
    # drawn first: the clip stays the one it always was
    brown_noise = nonspeech("brown_noise", brown, rng)
    parts = [
        nonspeech("silence", quiet, rng),
        nonspeech("white_noise", white, rng),
        brown_noise,
        nonspeech("silence", tail, rng),
    ]
    return write_wav(path, np.concatenate(parts))


def machine() -> dict[str, Any]:
    """The machine the figures were measured on, for the JSON report."""
    import psutil

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }
