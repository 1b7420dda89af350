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


def setting(key: str, help: str, *names: str, metavar: str | None = None) -> Any:
    """An option for a configuration key: its help ends with the built-in default, and its metavar
    shows the choices (or what kind of value), where typer would show `<str>`."""
    from livecap.config import FIELDS, Config

    rules = FIELDS[key][1].metadata
    default = Config().flat()[key]
    shown = ",".join(default) if isinstance(default, tuple) else default
    choices = rules.get("choices")
    return typer.Option(
        *names,
        help=f"{help} [default: {'none' if shown is None else shown}]",
        metavar=metavar or ("[" + "|".join(choices) + "]" if choices else None),
        show_default=False,
    )


Profile = Annotated[
    Optional[str], typer.Option("--profile", "-p", help="profile name or TOML path", metavar="NAME")
]
Model = Annotated[
    Optional[str], setting("model", "tiny.en, base, a model directory or a hub id", metavar="NAME")
]
Language = Annotated[
    Optional[str],
    setting("language", "spoken language: code or English name (none: detect)", metavar="LANG"),
]
Task = Annotated[Optional[str], setting("task", "transcribe, or translate (speech to English)")]
BeamSize = Annotated[Optional[int], setting("beam_size", "beam size (1 = greedy)", metavar="N")]
ComputeType = Annotated[
    Optional[str],
    setting(
        "compute_type", "CTranslate2 type (default: int8 on CPU, float16 on CUDA)", metavar="TYPE"
    ),
]
Workers = Annotated[Optional[int], setting("workers", "parallel ASR workers", metavar="N")]
Device = Annotated[
    Optional[str],
    setting("device", "where ASR runs: cpu, cuda (or fail), auto (CUDA when usable, else the CPU)"),
]
Gpu = Annotated[
    Optional[str],
    typer.Option(
        help="the same as --device: --gpu is cuda, --gpu auto, --gpu off is cpu",
        metavar="[auto|off]",
    ),
]
OutputDir = Annotated[
    Optional[str],
    setting("output_dir", "where caption files are written", "--output-dir", "-o", metavar="DIR"),
]
OutputFormat = Annotated[
    Optional[str],
    setting(
        "output_format",
        "comma list of txt, srt, vtt, json, tsv, verbose_json, or all",
        "--output-format",
        "-f",
        metavar="LIST",
    ),
]
SubtitleText = Annotated[
    Optional[str],
    setting("subtitle_text", "with a translation, text files of: original, translation or both"),
]
MaxLineWidth = Annotated[
    Optional[int], setting("max_line_width", "longest srt/vtt line in characters", metavar="N")
]
MaxLineCount = Annotated[
    Optional[int], setting("max_line_count", "most lines per srt/vtt cue", metavar="N")
]
TranslateTo = Annotated[
    Optional[str], setting("translate_to", "translate captions into this language", metavar="LANG")
]
Translator = Annotated[Optional[str], setting("translator", "translation backend")]
MinSilenceMs = Annotated[
    Optional[int], setting("min_silence_ms", "silence that ends an utterance (ms)", metavar="MS")
]
MaxUtteranceS = Annotated[
    Optional[float], setting("max_utterance_s", "longest utterance before a cut (s)", metavar="S")
]
MinPauseMs = Annotated[
    Optional[int],
    setting("min_pause_ms", "live: shortest pause that ends a long utterance (ms)", metavar="MS"),
]
Interim = Annotated[
    Optional[bool], setting("interim", "show interim captions", "--interim/--no-interim")
]
InitialPrompt = Annotated[
    Optional[str],
    setting(
        "initial_prompt", "text that primes each decode: names, spelling, style", metavar="TEXT"
    ),
]
Hotwords = Annotated[
    Optional[str],
    setting("hotwords", "words to favour (names, jargon), space-separated", metavar="TEXT"),
]
WordTimestamps = Annotated[
    Optional[bool],
    setting(
        "word_timestamps", "time each word of the finals", "--word-timestamps/--no-word-timestamps"
    ),
]
Diarize = Annotated[
    Optional[bool],
    setting("diarize", "label speakers S1, S2, ... (the diarize extra)", "--diarize/--no-diarize"),
]
Speakers = Annotated[
    Optional[int], setting("speakers", "with --diarize: how many speakers", metavar="N")
]
MinSpeakers = Annotated[
    Optional[int], setting("min_speakers", "with --diarize: at least N speakers", metavar="N")
]
MaxSpeakers = Annotated[
    Optional[int], setting("max_speakers", "with --diarize: at most N speakers", metavar="N")
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
    """Configuration flags from options; None means not given. `--gpu` is another way to say
    `--device` (kept for old command lines); the two must not disagree."""
    from livecap.errors import LivecapError

    gpu = given.pop("gpu", None)
    out = {key: value for key, value in given.items() if value is not None}
    if gpu is not None:
        if gpu not in GPU_VALUES:
            raise LivecapError(f"--gpu takes auto, on or off (got {gpu!r})")
        if out.get("device", GPU_VALUES[gpu]) != GPU_VALUES[gpu]:
            raise LivecapError(
                f"--gpu {gpu} and --device {out['device']} disagree; give one of them"
            )
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
    device: Device = None,
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
    min_pause_ms: MinPauseMs = None,
    interim: Interim = None,
    diarize: Diarize = None,
    speakers: Speakers = None,
    min_speakers: MinSpeakers = None,
    max_speakers: MaxSpeakers = None,
    plain: Plain = False,
    jsonl: Jsonl = False,
) -> None:
    """The options of every command that runs the pipeline
    (declared once, see `pipeline_command`)."""


def options_from(
    declaration: Callable[..., None],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the options `declaration`'s signature lists: typer sees them in the command's
    signature, and the command gets them as one dict in its `options` parameter (so a list of
    options is written once, not per command)."""
    declared = inspect.signature(declaration).parameters

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command).parameters
        hints = {
            **get_type_hints(declaration, include_extras=True),
            **get_type_hints(command, include_extras=True),
        }
        parameters = [
            p.replace(annotation=hints[name]) for name, p in own.items() if name != "options"
        ]
        parameters += [p.replace(annotation=hints[name]) for name, p in declared.items()]

        @functools.wraps(command)
        def wrapper(**given: Any) -> None:
            options = {name: given.pop(name) for name in declared}
            command(**given, options=options)

        signature = inspect.Signature(parameters, return_annotation=None)
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # typer must read the new signature, not the command's
        return wrapper

    return decorate


pipeline_command = options_from(_pipeline_options)


def config_flags(options: dict[str, Any], **extra: Any) -> tuple[str | None, dict[str, Any]]:
    """The profile and the configuration flags from a command's pipeline options."""
    given = {k: v for k, v in options.items() if k not in ("profile", "plain", "jsonl")}
    return options["profile"], flags(**given, **extra)
