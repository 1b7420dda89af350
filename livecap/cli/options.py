"""Command-line options shared by several commands, and how they become configuration flags.

Every option defaults to None, meaning "not given", so that only what the user typed overrides the
lower configuration layers (profile, user config, environment).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional, get_type_hints

import typer

Profile = Annotated[Optional[str], typer.Option("--profile", "-p", help="profile name or TOML path")]
Model = Annotated[Optional[str], typer.Option(help="tiny.en, base, a model directory or a hub id")]
Language = Annotated[Optional[str], typer.Option(help="spoken language code (default: detect)")]
Task = Annotated[Optional[str], typer.Option(help="transcribe or translate (speech to English)")]
BeamSize = Annotated[Optional[int], typer.Option(help="beam size (1 = greedy)")]
ComputeType = Annotated[Optional[str], typer.Option(help="int8, float16, ... (default: int8 on CPU)")]
Workers = Annotated[Optional[int], typer.Option(help="parallel ASR workers")]
Gpu = Annotated[
    Optional[str], typer.Option(help="run ASR on CUDA: --gpu, or --gpu auto to fall back to the CPU", metavar="[auto]")
]
OutputDir = Annotated[Optional[str], typer.Option(help="where caption files are written")]
OutputFormat = Annotated[
    Optional[str], typer.Option(help="comma list of txt, srt, vtt, json, tsv, verbose_json, or all")
]
SubtitleText = Annotated[
    Optional[str], typer.Option(help="with a translation, text files of: original, translation or both")
]
MaxLineWidth = Annotated[Optional[int], typer.Option(help="longest srt/vtt line in characters (42)")]
MaxLineCount = Annotated[Optional[int], typer.Option(help="most lines per srt/vtt cue (2)")]
TranslateTo = Annotated[Optional[str], typer.Option(help="translate captions into this language")]
Translator = Annotated[Optional[str], typer.Option(help="auto, whisper or argos")]
MinSilenceMs = Annotated[Optional[int], typer.Option(help="silence that ends an utterance (ms)")]
MaxUtteranceS = Annotated[Optional[float], typer.Option(help="longest utterance before a cut (s)")]
Interim = Annotated[Optional[bool], typer.Option("--interim/--no-interim", help="show interim captions")]
InitialPrompt = Annotated[Optional[str], typer.Option(help="text that primes each decode: names, spelling, style")]
Hotwords = Annotated[Optional[str], typer.Option(help="words to favour (names, jargon), space-separated")]
WordTimestamps = Annotated[
    Optional[bool], typer.Option("--word-timestamps/--no-word-timestamps", help="time each word of the finals")
]
Plain = Annotated[bool, typer.Option(help="one line per final caption, no live view")]
Jsonl = Annotated[bool, typer.Option(help="machine-readable events, one JSON object a line")]

GPU_VALUES = {"on": "cuda", "auto": "auto", "off": "cpu"}


def gpu_argv(argv: list[str]) -> list[str]:
    """Let `--gpu` stand alone or take `auto`/`on`/`off`: rewrite it to `--gpu=VALUE`."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--gpu":
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following in GPU_VALUES:
                out.append(f"--gpu={following}")
                i += 2
                continue
            out.append("--gpu=on")
        else:
            out.append(arg)
        i += 1
    return out


def flags(**given: Any) -> dict[str, Any]:
    """Configuration flags from options; None means not given. `gpu` maps to the `device` key."""
    gpu = given.pop("gpu", None)
    out = {key: value for key, value in given.items() if value is not None}
    if gpu is not None:
        if gpu not in GPU_VALUES:
            from livecap.errors import LivecapError

            raise LivecapError(f"--gpu takes auto, on or off (got {gpu!r})")
        out["device"] = GPU_VALUES[gpu]
    return out


def _pipeline_options(
    profile: Profile = None,
    model: Model = None,
    language: Language = None,
    task: Task = None,
    beam_size: BeamSize = None,
    compute_type: ComputeType = None,
    workers: Workers = None,
    gpu: Gpu = None,
    initial_prompt: InitialPrompt = None,
    hotwords: Hotwords = None,
    word_timestamps: WordTimestamps = None,
    output_dir: OutputDir = None,
    output_format: OutputFormat = None,
    subtitle_text: SubtitleText = None,
    max_line_width: MaxLineWidth = None,
    max_line_count: MaxLineCount = None,
    translate_to: TranslateTo = None,
    translator: Translator = None,
    min_silence_ms: MinSilenceMs = None,
    max_utterance_s: MaxUtteranceS = None,
    interim: Interim = None,
    plain: Plain = False,
    jsonl: Jsonl = False,
) -> None:
    """The options of every command that runs the pipeline (declared once, see `pipeline_command`)."""


PIPELINE_OPTIONS = inspect.signature(_pipeline_options).parameters


def pipeline_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the pipeline options: typer sees them in its signature, and the command gets
    them as one dict in its `options` parameter (so the list is written once, not per command)."""
    own = inspect.signature(command).parameters
    hints = {**get_type_hints(_pipeline_options, include_extras=True), **get_type_hints(command, include_extras=True)}
    parameters = [p.replace(annotation=hints[name]) for name, p in own.items() if name != "options"]
    parameters += [p.replace(annotation=hints[name]) for name, p in PIPELINE_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**given: Any) -> None:
        options = {name: given.pop(name) for name in PIPELINE_OPTIONS}
        command(**given, options=options)

    wrapper.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer must read the new signature, not the command's
    return wrapper


def config_flags(options: dict[str, Any], **extra: Any) -> tuple[str | None, dict[str, Any]]:
    """The profile and the configuration flags from a command's pipeline options."""
    given = {k: v for k, v in options.items() if k not in ("profile", "plain", "jsonl")}
    return options["profile"], flags(**given, **extra)
