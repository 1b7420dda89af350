"""`livecap bench`: the command; what it measures is described in `livecap.bench.plan`."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

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


def bench_command(
    inputs: Annotated[
        Optional[list[Path]],
        typer.Argument(
            help="audio files or a manifest.tsv (default: the bundled sample)", show_default=False, metavar="FILES..."
        ),
    ] = None,
    profile: opt.Profile = None,
    model: Annotated[
        Optional[str], typer.Option(help="comma list of models [default: tiny.en]", metavar="LIST")
    ] = None,
    compute_type: Annotated[Optional[str], typer.Option(help="comma list of compute types", metavar="LIST")] = None,
    workers: Annotated[
        Optional[str], typer.Option(help="comma list of worker counts [default: 2]", metavar="LIST")
    ] = None,
    beam_size: Annotated[
        Optional[str], typer.Option(help="comma list of beam sizes [default: 1]", metavar="LIST")
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option(help="compute devices: comma list of cpu, cuda, auto [default: cpu]", metavar="LIST"),
    ] = None,
    batch_size: Annotated[
        Optional[str], typer.Option(help="comma list of ASR batch sizes (1: no batching)", metavar="LIST")
    ] = None,
    language: opt.Language = None,
    translate_to: opt.TranslateTo = None,
    translator: opt.Translator = None,
    repeat: Annotated[
        int, typer.Option(min=1, max=50, metavar="N", help="runs per configuration (median, min-max)")
    ] = 1,
    live: Annotated[bool, typer.Option("--live/--no-live", help="also replay at 1x through the live pipeline")] = True,
    live_limit: Annotated[
        float, typer.Option(min=0, metavar="S", help="seconds of audio replayed live per run (takes that long)")
    ] = LIVE_LIMIT_S,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="also run plain faster-whisper")] = True,
    mix: Annotated[
        Optional[float],
        typer.Option(
            min=0.5,
            max=180,
            metavar="MINUTES",
            help="build a long mix of this many minutes from the inputs and measure it",
        ),
    ] = None,
    session: Annotated[Optional[float], typer.Option(min=0.5, max=180, hidden=True, help="deprecated: --mix")] = None,
    streams: Annotated[
        Optional[str],
        typer.Option(
            metavar="LIST",
            help="instead: N concurrent 1x streams through `livecap serve` on loopback, for each N of this comma list",
        ),
    ] = None,
    stream_seconds: Annotated[
        float, typer.Option(min=1, metavar="S", help="speech each --streams client sends")
    ] = 30.0,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", metavar="FILE", help="write every figure to this JSON file")
    ] = None,
    plot: Annotated[
        Optional[Path], typer.Option(metavar="FILE", help="draw latency and RTF per configuration into a PNG")
    ] = None,
) -> None:
    """Measure RTF, latency, WER and memory per configuration, against plain faster-whisper."""
    from livecap.bench import report
    from livecap.bench.run import Job, run_job, steps

    if plot is not None:
        report.check_plot(plot)
    for target in (json_path, plot):
        if target is not None:
            check_target(target)
    if session is not None:
        warn("--session is deprecated: use --mix")
        mix = session if mix is None else mix
    items = load_inputs(list(inputs or []))
    sweeps = {
        "model": model,
        "compute_type": compute_type,
        "workers": workers,
        "beam_size": beam_size,
        "device": device,
        "batch_size": batch_size,
    }
    fixed = {
        k: v
        for k, v in {"language": language, "translate_to": translate_to, "translator": translator}.items()
        if v is not None
    }
    configs = configurations(profile, sweeps, fixed)
    check_configurations(configs)
    keys = varying(configs)
    if streams is not None:
        bench_streams(configs, keys, items, streams, stream_seconds, json_path)
        return
    limit = live_limit if live else 0.0
    results: list[dict] = []
    failure: LivecapError | None = None
    with tempfile.TemporaryDirectory(prefix="livecap-bench-") as tmp:
        if mix is not None:
            items = [mix_item(items, mix, Path(tmp))]
        nonspeech = write_nonspeech(Path(tmp) / "nonspeech.wav")
        jobs = [
            [Job(kind, config, tuple(items), nonspeech, limit) for kind in ("livecap", "baseline")[: 1 + baseline]]
            for config in configs
        ]
        with report.progress() as bar:
            task = bar.add_task("bench", total=sum(steps(j) for runs in jobs for j in runs) * repeat)
            try:
                for config, runs in zip(configs, jobs):
                    raws = []
                    for index in range(repeat):
                        raw = {}
                        for job in runs:
                            name = f"{label(config, keys)} #{index + 1}"
                            raw[job.kind] = run_job(
                                job, lambda text, name=name: bar.update(task, advance=1, description=f"{name}: {text}")
                            )
                        raws.append(raw)
                    results.append(report.configuration(label(config, keys), config, raws))
            except LivecapError as error:  # keep and show what was measured before the failure
                failure = LivecapError(
                    f"{label(config, keys)}: {error}"
                    + (f" (the {len(results)} configuration(s) measured before it are shown above)" if results else "")
                )
    document = {
        "machine": machine(),
        "command": "livecap " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "livecap bench",
        "inputs": [
            {"path": str(i.path), "duration_s": i.duration, "reference": i.reference, "language": i.language}
            for i in items
        ],
        "repeat": repeat,
        "live_limit_s": limit,
        "configurations": results,
    }
    if results:
        report.show(document)
        if json_path is not None:
            report.write_json(document, json_path)
        if plot is not None:
            report.draw(document, plot)
    if failure is not None:
        raise failure


def check_target(target: Path) -> None:
    """An output file of the bench must be writable before hours of measuring, not after."""
    if target.is_dir():
        raise LivecapError(f"{target}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise LivecapError(f"{target}: its folder does not exist")
    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise LivecapError(f"{target}: not writable")


def bench_streams(
    configs: list, keys: list[str], items: list, levels: str, seconds: float, json_path: Path | None
) -> None:
    """`--streams`: a server per configuration, N concurrent live clients per level (livecap.bench.streams)."""
    from livecap.bench import report, streams

    try:
        counts = sorted({int(n) for n in levels.split(",") if n.strip()})
    except ValueError:
        raise LivecapError(f"--streams takes a comma list of stream counts (got {levels!r})") from None
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
