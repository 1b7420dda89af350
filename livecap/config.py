"""One typed configuration for the whole program, resolved from layers.

Precedence, lowest first: built-in defaults < profile < user config file < environment
(`LIVECAP_<KEY>`) < command-line flags. Keys are unique across sections, so a key is spelled the
same everywhere: `beam_size` in TOML, `LIVECAP_BEAM_SIZE` in the environment, `--beam-size` on the
command line. The pipeline only ever sees the resolved, frozen `Config`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from livecap.errors import LivecapError
from livecap.languages import language_code

ENV_PREFIX = "LIVECAP_"
# LIVECAP_ names that are not keys
OTHER_VARIABLES = ("CONFIG", "PROFILE", "CACHE_DIR", "SHARED_AUDIO", "API_KEY")
# `all` in output_format means every one
FORMATS = ("txt", "srt", "vtt", "json", "tsv", "verbose_json")


def _opt(default: Any, help: str, **rules: Any) -> Any:
    """A config field with its help text and validation rules (choices, min, max)."""
    return field(default=default, metadata={"help": help, **rules})


@dataclass(frozen=True)
class AsrConfig:
    """Recognition: model, device, decoding."""

    model: str = _opt(
        "tiny.en", "model name (tiny.en, base, any faster-whisper name), hub id or directory"
    )
    device: str = _opt("cpu", "where ASR runs", choices=("cpu", "cuda", "auto"))
    compute_type: str = _opt(
        "default",
        "CTranslate2 compute type (default: int8 on CPU, float16 on CUDA)",
        choices=(
            "default", "int8", "int8_float16", "int8_float32", "int16", "float16", "bfloat16",
            "float32",
        ),
    )
    workers: int = _opt(2, "parallel ASR workers sharing one model", min=1, max=16)
    cpu_threads: int = _opt(0, "CPU threads per worker (0: cores / workers)", min=0, max=256)
    beam_size: int = _opt(1, "beam size (1 = greedy)", min=1, max=16)
    language: str | None = _opt(None, "spoken language code (none: detect)")
    task: str = _opt("transcribe", "Whisper task", choices=("transcribe", "translate"))
    initial_prompt: str | None = _opt(None, "text that primes each decode: names, spelling, style")
    hotwords: str | None = _opt(None, "words to favour (names, jargon), as a space-separated list")
    word_timestamps: bool = _opt(True, "time each word of the final captions")
    batch_size: int = _opt(
        1,
        "finals decoded together in one call, across streams and file windows (0: by device)",
        min=0,
        max=64,
    )
    batch_wait_ms: int = _opt(
        5, "longest a final is held for others to share its call (ms)", min=0, max=1000
    )


@dataclass(frozen=True)
class VadConfig:
    """Speech detection and how utterances are cut."""

    vad_threshold: float = _opt(
        0.5, "speech starts above this Silero probability", min=0.05, max=0.95
    )
    vad_neg_threshold: float = _opt(0.35, "speech ends below this probability", min=0.01, max=0.95)
    min_silence_ms: int = _opt(500, "silence that ends an utterance", min=32, max=10_000)
    speech_pad_ms: int = _opt(
        400,
        "audio kept before speech starts (pre-roll) and after it ends (live: 200 ms, then silence)",
        min=0,
        max=2_000,
    )
    min_speech_ms: int = _opt(
        200,
        "shorter bursts join speech within 2 s (or go alone just after it); far from speech, "
        "dropped",
        min=0,
        max=5_000,
    )
    max_utterance_s: float = _opt(
        15.0, "longer speech is cut at its quietest point", min=1.0, max=30.0
    )
    min_pause_ms: int = _opt(
        250,
        "live: past half of max_utterance_s, the silence that ends an utterance falls from "
        "min_silence_ms to this at the limit",
        min=32,
        max=10_000,
    )


@dataclass(frozen=True)
class LiveConfig:
    """Live input and interim captions."""
    input_device: str | None = _opt(None, "input device index or name substring (none: default)")
    interim: bool = _opt(True, "show interim captions while speech goes on")
    interim_interval_ms: int = _opt(
        300, "least time between interim transcriptions of one utterance", min=100, max=10_000
    )
    interim_share: float = _opt(
        0.4,
        "most of one worker's time a stream's interims may take (the cadence slows to keep it)",
        min=0.01,
        max=1.0,
    )
    interim_pool_share: float = _opt(
        0.5,
        "most of all the ASR workers interims of all streams together may occupy (at least one "
        "worker)",
        min=0.01,
        max=1.0,
    )
    max_pending_finals: int = _opt(
        6, "final utterances waiting for ASR before the VAD stage waits", min=1, max=256
    )
    capture_queue_s: float = _opt(
        30.0, "audio the capture queue holds before it drops (seconds)", min=1.0, max=600.0
    )


@dataclass(frozen=True)
class TranslateConfig:
    """Translation of captions."""
    translate_to: str | None = _opt(None, "translate captions into this language code")
    translator: str = _opt("auto", "translation backend", choices=("auto", "whisper", "argos"))
    argos_index_url: str = _opt(
        "https://raw.githubusercontent.com/argosopentech/argospm-index/main/index.json",
        "Argos package index used by `livecap models install-translation --from/--to`",
    )


@dataclass(frozen=True)
class DiarizeConfig:
    """Speaker labels (the diarize extra)."""
    diarize: bool = _opt(False, "label who speaks (S1, S2, ...) in captions and files")
    speakers: int | None = _opt(None, "how many speakers there are, when known", min=1, max=32)
    min_speakers: int | None = _opt(None, "at least this many speakers", min=1, max=32)
    max_speakers: int | None = _opt(None, "at most this many speakers", min=1, max=32)


@dataclass(frozen=True)
class OutputConfig:
    """Caption files: where, which formats, which text."""
    output_dir: str = _opt(".", "where caption files are written")
    output_format: tuple[str, ...] = _opt(
        ("txt", "srt", "vtt", "json"), "formats to write", choices=(*FORMATS, "all")
    )
    subtitle_text: str = _opt(
        "both",
        "with a translation, the text files to write: <stem>.<ext> (original), "
        "<stem>.<lang>.<ext> (translation) or both",
        choices=("original", "translation", "both"),
    )
    max_line_width: int = _opt(42, "longest srt/vtt line (characters)", min=10, max=200)
    max_line_count: int = _opt(
        2, "most lines in one srt/vtt cue; longer captions become more cues", min=1, max=10
    )


@dataclass(frozen=True)
class ServerConfig:
    """`livecap serve`: where it listens and what it allows. The API key is not a setting: a secret,
    it comes from `--api-key` or LIVECAP_API_KEY only, so no file holds it and nothing prints it."""

    host: str = _opt("127.0.0.1", "address to listen on (0.0.0.0: every interface; set an API key)")
    port: int = _opt(8000, "TCP port (0: any free port)", min=0, max=65535)
    max_streams: int | None = _opt(
        None,
        "live streams and sessions at once (none or auto: estimated from the measured load)",
        min=1,
        max=10_000,
    )
    max_wait_s: float = _opt(
        30.0,
        "how long a stream, session or upload waits in line for a place (0: refuse at once)",
        min=0.0,
        max=86_400.0,
    )
    max_waiting: int = _opt(
        100, "streams and sessions waiting in line at once; more are refused", min=1, max=100_000
    )
    max_uploads: int | None = _opt(
        None, "uploads transcribed at once (none: one per ASR worker)", min=1, max=1_000
    )
    max_queued_uploads: int | None = _opt(
        None, "uploads waiting in line at once (none: four per upload place)", min=1, max=100_000
    )
    max_rss_mb: int | None = _opt(
        None,
        "memory budget (MiB): above it interims are shed and new work waits "
        "(none: half the machine's memory)",
        min=1,
        max=16_777_216,
    )
    max_upload_mb: float = _opt(100.0, "largest upload (MiB)", min=0.001, max=1_000_000.0)
    max_frame_kb: float = _opt(256.0, "largest WebSocket message (KiB)", min=1.0, max=1_048_576.0)
    idle_timeout_s: float = _opt(
        30.0, "a stream that sends nothing this long is ended", min=0.1, max=86_400.0
    )
    max_stream_s: float = _opt(
        4 * 3600.0, "a stream is ended after this long", min=1.0, max=2_592_000.0
    )
    drain_s: float = _opt(
        10.0, "on shutdown, time for open streams to send their last finals", min=0.0, max=3_600.0
    )
    max_unsent_finals: int = _opt(
        1000, "finals a stream's client may leave unread before it is cut off", min=1, max=1_000_000
    )
    data_dir: str | None = _opt(None, "the media library's folder (none: the user data folder)")
    max_media: int = _opt(100, "files in the media library", min=1, max=100_000)
    max_viewers: int = _opt(
        1000, "session viewers at once, all sessions together", min=1, max=1_000_000
    )
    viewer_buffer: int = _opt(
        256, "events unsent to one viewer before it is cut off (it rejoins)", min=1, max=100_000
    )
    history_finals: int = _opt(
        1000, "finals a session keeps for late viewers", min=1, max=1_000_000
    )
    ended_sessions: int = _opt(
        20, "ended sessions still listed, with their history", min=1, max=10_000
    )
    ping_s: float = _opt(20.0, "WebSocket ping interval and timeout", min=0.5, max=3_600.0)
    redis_url: str | None = _opt(
        None,
        "share sessions and the media index with other replicas through this Redis "
        "(redis://HOST:PORT/DB; none: this server alone)",
    )
    replica: str | None = _opt(None, "this replica's name in the cluster (none: host:port)")
    lease_s: float = _opt(
        5.0,
        "a replica's sessions are taken over this long after it stops renewing them",
        min=0.5,
        max=600.0,
    )
    header_timeout_s: float = _opt(
        10.0,
        "a connection that has not sent a whole request head by then gets 408",
        min=0.1,
        max=3_600.0,
    )
    max_pending_headers: int = _opt(
        128,
        "connections still sending their request heads at once; more get 503",
        min=1,
        max=100_000,
    )
    preload: tuple[str, ...] | None = _opt(
        None, "models loaded at start and kept, besides the default one"
    )
    model_ttl_s: float = _opt(
        300.0,
        "unload a model no request has used for this long (-1: never)",
        min=-1.0,
        max=31_536_000.0,
    )
    max_models: int = _opt(
        2, "models loaded on demand at once, the default and preloaded ones aside", min=0, max=64
    )
    model_wait_s: float = _opt(
        120.0, "how long a request waits for a model slot before a 503", min=0.0, max=3_600.0
    )

    @property
    def max_upload_bytes(self) -> int:
        """`max_upload_mb` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_frame_bytes(self) -> int:
        """`max_frame_kb` in bytes."""
        return int(self.max_frame_kb * 1024)


@dataclass(frozen=True)
class Config:
    """Every setting, by section; `resolve` builds it from its layers."""

    asr: AsrConfig = field(default_factory=AsrConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    diarize: DiarizeConfig = field(default_factory=DiarizeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    def flat(self) -> dict[str, Any]:
        """Every key with its value."""
        return {key: getattr(getattr(self, section), key) for key, (section, _) in FIELDS.items()}


_SECTION_TYPES: dict[str, type] = {name: type(section) for name, section in vars(Config()).items()}
SECTIONS = tuple(_SECTION_TYPES)
_TABLES = ", ".join(f"[{s}]" for s in SECTIONS)


def _fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every key with its section and field; a key may appear in one section only."""
    table: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, kind in _SECTION_TYPES.items():
        for f in dataclasses.fields(kind):
            if f.name in table:
                raise TypeError(
                    f"config key {f.name} is in both [{table[f.name][0]}] and [{section}]"
                )
            table[f.name] = (section, f)
    return table


FIELDS = _fields()


def _kind(key: str) -> tuple[type, bool]:
    """A key's value type (str, int, float, bool or tuple) and whether it may be None."""
    section, _ = FIELDS[key]
    hint = get_type_hints(_SECTION_TYPES[section])[key]
    args = get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    return get_origin(hint) or hint, optional


_KINDS = {key: _kind(key) for key in FIELDS}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Resolved:
    """A resolved configuration and, for every key, the layer its value came from."""

    config: Config
    sources: dict[str, str]
    warnings: tuple[str, ...] = ()  # not fatal: a misspelt LIVECAP_ variable


def _allowed(key: str) -> str:
    """What a key accepts, in words (for help and error messages)."""
    kind, optional = _KINDS[key]
    rules = FIELDS[key][1].metadata
    if "choices" in rules:
        words = ("a list of " if kind is tuple else "one of ") + ", ".join(rules["choices"])
    elif kind is tuple:
        words = "a list of names"
    elif kind is bool:
        words = "true or false"
    elif kind in (int, float):
        words = (
            "a whole number" if kind is int else "a number"
        ) + f" from {rules['min']} to {rules['max']}"
    else:
        words = "text"
    return words + (" (empty: none)" if optional else "")


def _parse(kind: type, value: Any, text: bool, fold: bool = True) -> Any:
    """`value` as `kind`; strings are parsed only from text sources (environment, command line).
    `fold`: a list's items are lower-cased (choices); names such as model names keep their case."""
    if text and isinstance(value, str) and kind in (bool, int, float):
        word = value.strip().lower()
        if kind is bool:
            if word not in _TRUE + _FALSE:
                raise ValueError(value)
            return word in _TRUE
        value = kind(word)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        kind is float
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    ):
        return float(value)
    if kind is str and isinstance(value, str) and value.strip():
        return value
    if kind is tuple:
        items = value.split(",") if text and isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(item, str) for item in items):
            names = (
                item.strip().lower() if fold else item.strip() for item in items if item.strip()
            )
            parsed = tuple(dict.fromkeys(names))
            if parsed:
                return parsed
    raise ValueError(value)


def _coerce(key: str, value: Any, origin: str, *, text: bool = False) -> Any:
    """Check one value against its key's type and rules; raise a one-line error naming `origin`.

    `text`: the value comes from text (environment, command line), so "3" may mean 3.
    """
    kind, optional = _KINDS[key]
    if optional and (
        value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "auto"))
    ):
        return None
    rules = FIELDS[key][1].metadata
    try:
        parsed = _parse(kind, value, text, fold="choices" in rules)
    except (TypeError, ValueError, OverflowError):
        valid = False
    else:
        items = parsed if isinstance(parsed, tuple) else (parsed,)
        valid = all(item in rules.get("choices", (item,)) for item in items) and rules.get(
            "min", parsed
        ) <= parsed <= rules.get("max", parsed)
    if not valid:
        raise LivecapError(f"{origin}: {key} must be {_allowed(key)} (got {value!r})")
    if key == "language" and parsed is not None:
        try:
            return language_code(parsed)
        except LivecapError as error:
            raise LivecapError(f"{origin}: {error}") from None
    return parsed


def _unknown(key: str, section: str | None, in_file: bool = True) -> str:
    """Why `key` is not allowed in `section` (None: at the top level), with what is."""
    if section is not None and key in FIELDS:
        return f"{key} belongs in [{FIELDS[key][0]}], not [{section}]"
    keys = [k for k, (s, _) in FIELDS.items() if section in (None, s)]
    guess = get_close_matches(key, keys, n=1)
    hint = f" (did you mean {guess[0]}?)" if guess else ""
    where = f" in [{section}]" if section else ""
    tables = f"tables {_TABLES} or keys " if in_file and section is None else ""
    return f"unknown key {key!r}{where}{hint}; allowed: {tables}{', '.join(keys)}"


def _layer_from_mapping(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Validate a profile or config file: tables ([asr], [vad], ...) of keys, or keys at the top."""
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in SECTIONS:
            if not isinstance(value, Mapping):
                raise LivecapError(
                    f"{origin}: {name} must be a table ([{name}] followed by its keys)"
                )
            pairs: list[tuple[str, Any, str | None]] = [
                (key, inner, name) for key, inner in value.items()
            ]
        elif isinstance(value, Mapping):
            raise LivecapError(f"{origin}: unknown table [{name}]; allowed: {_TABLES}")
        else:
            pairs = [(name, value, None)]
        for key, inner, section in pairs:
            if key not in FIELDS or section not in (None, FIELDS[key][0]):
                raise LivecapError(f"{origin}: {_unknown(key, section)}")
            if key in values:
                raise LivecapError(f"{origin}: {key} is set twice")
            values[key] = _coerce(key, inner, origin)
    return values


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file into a validated layer of values."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LivecapError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LivecapError(f"{path}: cannot read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise LivecapError(f"{path}: not valid TOML ({error})") from None
    return _layer_from_mapping(data, str(path))


def profiles_dir() -> Path:
    """Shipped profiles: inside the installed package, or `profiles/` beside it in a checkout."""
    packaged = Path(__file__).parent / "profiles"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "profiles"


def list_profiles() -> dict[str, Path]:
    """Shipped profiles by name."""
    return {path.stem: path for path in sorted(profiles_dir().glob("*.toml"))}


def profile_description(path: Path) -> str:
    """What a profile is for: its first comment line."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def profile_path(name_or_path: str) -> Path:
    """A profile by shipped name or by path to a TOML file."""
    shipped = list_profiles()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.suffix == ".toml" or path.exists():
        raise LivecapError(
            f"profile {name_or_path}: {'not a file' if path.exists() else 'no such file'}"
        )
    raise LivecapError(
        f"unknown profile {name_or_path!r}; shipped profiles: {', '.join(shipped)}, or a .toml path"
    )


def user_config_path(env: Mapping[str, str]) -> Path:
    """The user config file (`LIVECAP_CONFIG` overrides the platform's config dir)."""
    if env.get(f"{ENV_PREFIX}CONFIG"):
        return Path(env[f"{ENV_PREFIX}CONFIG"]).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("livecap", appauthor=False)) / "config.toml"


def resolve(
    profile: str | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Resolved:
    """Resolve the configuration from all layers; `flags`
    holds only options given on the command line.

    The profile is `profile`, else `LIVECAP_PROFILE`, else `default`.
    """
    env = os.environ if env is None else env
    if profile is None and env.get(f"{ENV_PREFIX}PROFILE"):
        try:
            path = profile_path(env[f"{ENV_PREFIX}PROFILE"])
        except LivecapError as error:
            raise LivecapError(f"environment {ENV_PREFIX}PROFILE: {error}") from None
    else:
        path = profile_path(profile or "default")
    label = f"profile {path.stem}" if path.parent == profiles_dir() else f"profile {path}"
    layers: list[dict[str, tuple[Any, str]]] = [{k: (v, label) for k, v in read_toml(path).items()}]
    user_path = user_config_path(env)
    if env.get(f"{ENV_PREFIX}CONFIG") and not user_path.exists():
        raise LivecapError(f"{ENV_PREFIX}CONFIG: {user_path}: no such file")
    if user_path.exists():
        layers.append({k: (v, f"user config {user_path}") for k, v in read_toml(user_path).items()})
    variables = {key: f"{ENV_PREFIX}{key.upper()}" for key in FIELDS}
    layers.append(
        {
            key: (_coerce(key, env[var], f"environment {var}", text=True), f"environment {var}")
            for key, var in variables.items()
            if var in env
        }
    )
    flags = flags or {}
    for key in flags:
        if key not in FIELDS:
            raise LivecapError(f"command line: {_unknown(key, None, in_file=False)}")
    layers.append(
        {
            key: (_coerce(key, value, f"--{key.replace('_', '-')}", text=True), "command line")
            for key, value in flags.items()
        }
    )

    values = Config().flat()
    sources = dict.fromkeys(values, "default")
    for layer in layers:
        for key, (value, origin) in layer.items():
            values[key] = value
            sources[key] = origin
    if values["vad_neg_threshold"] > values["vad_threshold"]:
        neg, pos = (f"{values[k]} ({sources[k]})" for k in ("vad_neg_threshold", "vad_threshold"))
        raise LivecapError(f"vad_neg_threshold {neg} must not exceed vad_threshold {pos}")
    if (
        None not in (values["min_speakers"], values["max_speakers"])
        and values["min_speakers"] > values["max_speakers"]
    ):
        low, high = (f"{values[k]} ({sources[k]})" for k in ("min_speakers", "max_speakers"))
        raise LivecapError(f"min_speakers {low} must not exceed max_speakers {high}")
    sections = {
        name: kind(**{k: values[k] for k, (s, _) in FIELDS.items() if s == name})
        for name, kind in _SECTION_TYPES.items()
    }
    return Resolved(Config(**sections), sources, _misspelt_variables(env, variables.values()))


def _misspelt_variables(env: Mapping[str, str], known: Any) -> tuple[str, ...]:
    """A warning for each LIVECAP_ variable that livecap does not read, with the nearest it does."""
    names = [*known, *(ENV_PREFIX + name for name in OTHER_VARIABLES)]
    out = []
    for var in sorted(v for v in env if v.startswith(ENV_PREFIX) and v not in names):
        guess = get_close_matches(var, names, n=1)
        out.append(
            f"environment {var} is not a livecap setting, ignored"
            + (f" (did you mean {guess[0]}?)" if guess else "")
        )
    return tuple(out)
