"""`livecap bench`: the command; what it measures is described in `livecap.bench.plan`."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from livecap.bench.plan import (
    LIVE_LIMIT_S,
    check_configurations,
    configurations,
    label,
    load_inputs,
    machine,
    mix_item,
    varying,
    write_nonspeech,
)
from livecap.cli import options as opt
from livecap.cli.common import warn
from livecap.errors import LivecapError

Inputs = Annotated[
    Optional[list[Path]],
    typer.Argument(
        help="audio files or a manifest.tsv (default: the bundled sample)",
        show_default=False,
        metavar="FILES...",
    ),
]


def _list(help: str) -> Any:
    """A comma-list option of configurations to sweep."""
    return Annotated[Optional[str], typer.Option(help=help, metavar="LIST")]


Models = _list("comma list of models [default: tiny.en]")
ComputeTypes = _list("comma list of compute types")
WorkerCounts = _list("comma list of worker counts [default: 2]")
BeamSizes = _list("comma list of beam sizes [default: 1]")
Devices = _list("compute devices: comma list of cpu, cuda, auto [default: cpu]")
BatchSizes = _list("comma list of ASR batch sizes (1: no batching)")
Repeat = Annotated[
    int, typer.Option(min=1, max=50, metavar="N", help="runs per configuration (median, min-max)")
]
Live = Annotated[
    bool, typer.Option("--live/--no-live", help="also replay at 1x through the live pipeline")
]
LiveLimit = Annotated[
    float,
    typer.Option(
        min=0, metavar="S", help="seconds of audio replayed live per run (takes that long)"
    ),
]
Baseline = Annotated[
    bool, typer.Option("--baseline/--no-baseline", help="also run plain faster-whisper")
]
Mix = Annotated[
    Optional[float],
    typer.Option(
        min=0.5,
        max=180,
        metavar="MINUTES",
        help="build a long mix of this many minutes from the inputs and measure it",
    ),
]
Reading = Annotated[
    bool,
    typer.Option(
        help="with --mix: a continuous reading instead, from the inputs of 40 s or more (clean, "
        "reverberant, quiet, phone in turn; no noise sections)",
    ),
]
Session = Annotated[
    Optional[float], typer.Option(min=0.5, max=180, hidden=True, help="deprecated: --mix")
]
Streams = Annotated[
    Optional[str],
    typer.Option(
        metavar="LIST",
        help="instead: N concurrent 1x streams through `livecap serve` on loopback, "
        "for each N of this comma list",
    ),
]
Speakers = Annotated[
    bool,
    typer.Option(
        "--speakers",
        help="instead: speaker labels' error and CPU on built conversations "
        "(the diarize extra; --live also replays each at 1x)",
    ),
]
StreamSeconds = Annotated[
    float, typer.Option(min=1, metavar="S", help="speech each --streams client sends")
]
JsonPath = Annotated[
    Optional[Path],
    typer.Option("--json", metavar="FILE", help="write every figure to this JSON file"),
]
Plot = Annotated[
    Optional[Path],
    typer.Option(metavar="FILE", help="draw latency and RTF per configuration into a PNG"),
]


def bench_command(
    inputs: Inputs = None,
    profile: opt.Profile = None,
    model: Models = None,
    compute_type: ComputeTypes = None,
    workers: WorkerCounts = None,
    beam_size: BeamSizes = None,
    device: Devices = None,
    batch_size: BatchSizes = None,
    language: opt.Language = None,
    translate_to: opt.TranslateTo = None,
    translator: opt.Translator = None,
    repeat: Repeat = 1,
    live: Live = True,
    live_limit: LiveLimit = LIVE_LIMIT_S,
    baseline: Baseline = True,
    mix: Mix = None,
    reading: Reading = False,
    session: Session = None,
    streams: Streams = None,
    speakers: Speakers = False,
    stream_seconds: StreamSeconds = 30.0,
    json_path: JsonPath = None,
    plot: Plot = None,
) -> None:
    """Measure RTF, latency, WER and memory per configuration, against plain faster-whisper."""
    from livecap.bench import report

    if plot is not None:
        report.check_plot(plot)
    for target in (json_path, plot):
        if target is not None:
            check_target(target)
    if session is not None:
        warn("--session is deprecated: use --mix")
        mix = session if mix is None else mix
    if reading and mix is None:
        raise LivecapError("--reading builds a mix: give --mix MINUTES too")
    items = load_inputs(list(inputs or []))
    sweeps = {
        "model": model,
        "compute_type": compute_type,
        "workers": workers,
        "beam_size": beam_size,
        "device": device,
        "batch_size": batch_size,
    }
    fixed = {"language": language, "translate_to": translate_to, "translator": translator}
    configs = configurations(profile, sweeps, {k: v for k, v in fixed.items() if v is not None})
    check_configurations(configs)
    if streams is not None:
        bench_streams(configs, varying(configs), items, streams, stream_seconds, json_path)
        return
    if speakers:
        bench_speakers(configs[0], live, json_path)
        return
    limit = live_limit if live else 0.0
    with tempfile.TemporaryDirectory(prefix="livecap-bench-") as tmp:
        if mix is not None:
            if language is not None:  # a mix in that language: the manifest's other rows left out
                items = [i for i in items if i.language in (None, language)]
            items = [mix_item(items, mix, Path(tmp), reading=reading)]
        nonspeech = write_nonspeech(Path(tmp) / "nonspeech.wav")
        kinds = ("livecap", "baseline")[: 1 + baseline]
        results, failure = measure_configurations(configs, items, nonspeech, kinds, repeat, limit)
    document = bench_document(items, repeat, limit, results)
    if results:
        report.show(document)
        if json_path is not None:
            report.write_json(document, json_path)
        if plot is not None:
            report.draw(document, plot)
    if failure is not None:
        raise failure


def measure_configurations(
    configs: list, items: list, nonspeech: Path, kinds: tuple[str, ...], repeat: int, limit: float
) -> tuple[list[dict], LivecapError | None]:
    """Every configuration `repeat` times (each run in its own processes), behind one progress bar;
    the summaries measured, and the failure that stopped the rest (the ones before it are kept)."""
    from livecap.bench import report
    from livecap.bench.run import Job, run_job, steps

    keys = varying(configs)
    jobs = [
        [Job(kind, config, tuple(items), nonspeech, limit) for kind in kinds] for config in configs
    ]
    results: list[dict] = []
    with report.progress() as bar:
        task = bar.add_task("bench", total=sum(steps(j) for runs in jobs for j in runs) * repeat)
        for config, runs in zip(configs, jobs):
            raws = []
            try:
                for index in range(repeat):
                    name = f"{label(config, keys)} #{index + 1}"

                    def step(text: str, name: str = name) -> None:
                        bar.update(task, advance=1, description=f"{name}: {text}")

                    raws.append({job.kind: run_job(job, step) for job in runs})
            except LivecapError as error:  # keep and show what was measured before the failure
                before = (
                    f" (the {len(results)} configuration(s) measured before it are shown above)"
                    if results
                    else ""
                )
                return results, LivecapError(f"{label(config, keys)}: {error}{before}")
            results.append(report.configuration(label(config, keys), config, raws))
    return results, None


def bench_document(items: list, repeat: int, limit: float, results: list[dict]) -> dict:
    """The bench's JSON document (its shape is described in `livecap.bench.plan`)."""
    return {
        "machine": machine(),
        "command": "livecap " + " ".join(sys.argv[1:])
        if sys.argv[1:2] == ["bench"]
        else "livecap bench",
        "inputs": [
            {
                "path": str(i.path),
                "duration_s": i.duration,
                "reference": i.reference,
                "language": i.language,
            }
            for i in items
        ],
        "repeat": repeat,
        "live_limit_s": limit,
        "configurations": results,
    }


def check_target(target: Path) -> None:
    """An output file of the bench must be writable before hours of measuring, not after."""
    if target.is_dir():
        raise LivecapError(f"{target}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise LivecapError(f"{target}: its folder does not exist")
    if not os.access(target.parent, os.W_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise LivecapError(f"{target}: not writable")


def bench_streams(
    configs: list, keys: list[str], items: list, levels: str, seconds: float, json_path: Path | None
) -> None:
    """`--streams`: a server per configuration, N concurrent
    live clients per level (livecap.bench.streams)."""
    from livecap.bench import report, streams

    try:
        counts = sorted({int(n) for n in levels.split(",") if n.strip()})
    except ValueError:
        raise LivecapError(
            f"--streams takes a comma list of stream counts (got {levels!r})"
        ) from None
    if not counts or counts[0] < 1 or counts[-1] > 64:
        raise LivecapError("--streams counts must be between 1 and 64")
    results = []
    for config in configs:
        name = label(config, keys)
        measured = streams.measure(config, items, counts, seconds)
        results.append({"label": name, **measured})
        report.show_streams(name, measured, seconds)
    if json_path is not None:
        report.write_json({"machine": machine(), "streams": results}, json_path)


def bench_speakers(config: Any, live: bool, json_path: Path | None) -> None:
    """`--speakers`: conversations built from the shared
    readers, labelled (livecap.bench.speakers)."""
    from livecap.bench import report, speakers

    shared = speakers.shared_audio()
    if not (shared / "manifest.tsv").is_file():
        raise LivecapError(
            f"--speakers needs the shared recordings ({shared}; set LIVECAP_SHARED_AUDIO)"
        )
    with tempfile.TemporaryDirectory(prefix="livecap-speakers-") as tmp:
        rows = speakers.measure(shared, Path(tmp), live=live, config=config)
    report.show_speakers(rows)
    if json_path is not None:
        report.write_json({"machine": machine(), "speakers": rows}, json_path)
