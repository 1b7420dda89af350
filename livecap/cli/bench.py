"""`livecap bench`: the command; what it measures is described in `livecap.bench.plan`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from livecap.bench.plan import (
    LIVE_LIMIT_S,
    configurations,
    label,
    load_inputs,
    machine,
    session_item,
    varying,
    write_nonspeech,
)
from livecap.cli import options as opt
from livecap.errors import LivecapError


def bench_command(
    inputs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="audio files or a manifest.tsv (default: the bundled sample)", show_default=False),
    ] = None,
    profile: opt.Profile = None,
    model: Annotated[Optional[str], typer.Option(help="comma list of models")] = None,
    compute_type: Annotated[Optional[str], typer.Option(help="comma list of compute types")] = None,
    workers: Annotated[Optional[str], typer.Option(help="comma list of worker counts")] = None,
    beam_size: Annotated[Optional[str], typer.Option(help="comma list of beam sizes")] = None,
    device: Annotated[Optional[str], typer.Option(help="comma list of cpu, cuda, auto")] = None,
    language: opt.Language = None,
    translate_to: opt.TranslateTo = None,
    translator: opt.Translator = None,
    repeat: Annotated[int, typer.Option(min=1, max=50, help="runs per configuration (median, min-max)")] = 1,
    live: Annotated[bool, typer.Option("--live/--no-live", help="also replay at 1x through the live pipeline")] = True,
    live_limit: Annotated[
        float, typer.Option(min=0, help="seconds of audio replayed live per run (takes that long)")
    ] = LIVE_LIMIT_S,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="also run plain faster-whisper")] = True,
    session: Annotated[
        Optional[float],
        typer.Option(min=0.5, max=180, help="build a long session of this many minutes from the inputs and measure it"),
    ] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write every figure to this JSON file")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="draw latency and RTF per configuration into a PNG")] = None,
) -> None:
    """Measure RTF, latency, WER and memory per configuration, against plain faster-whisper."""
    from livecap.bench import report
    from livecap.bench.run import Job, run_job, steps

    if plot is not None:
        report.check_plot(plot)
    for target in (json_path, plot):
        if target is not None and not target.parent.is_dir():
            raise LivecapError(f"{target}: its folder does not exist")
    items = load_inputs(list(inputs or []))
    sweeps = {"model": model, "compute_type": compute_type, "workers": workers, "beam_size": beam_size,
              "device": device}
    fixed = {k: v for k, v in {"language": language, "translate_to": translate_to, "translator": translator}.items()
             if v is not None}
    configs = configurations(profile, sweeps, fixed)
    keys = varying(configs)
    limit = live_limit if live else 0.0
    results = []
    with tempfile.TemporaryDirectory(prefix="livecap-bench-") as tmp:
        if session is not None:
            items = [session_item(items, session, Path(tmp))]
        nonspeech = write_nonspeech(Path(tmp) / "nonspeech.wav")
        jobs = [
            [Job(kind, config, tuple(items), nonspeech, limit) for kind in ("livecap", "baseline")[: 1 + baseline]]
            for config in configs
        ]
        with report.progress() as bar:
            task = bar.add_task("bench", total=sum(steps(j) for runs in jobs for j in runs) * repeat)
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
    document = {
        "machine": machine(),
        "command": "livecap " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "livecap bench",
        "inputs": [{"path": str(i.path), "duration_s": i.duration, "reference": i.reference} for i in items],
        "repeat": repeat,
        "live_limit_s": limit,
        "configurations": results,
    }
    report.show(document)
    if json_path is not None:
        report.write_json(document, json_path)
    if plot is not None:
        report.draw(document, plot)

