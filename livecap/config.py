"""One typed configuration for the whole program, resolved from layers.

Precedence, lowest first: built-in defaults < profile < user config file < environment
(`LIVECAP_<KEY>`) < command-line flags. Keys are unique across sections, so a key is spelled the
same everywhere: `beam_size` in TOML, `LIVECAP_BEAM_SIZE` in the environment, `--beam-size` on the
command line. The pipeline only ever sees the resolved, frozen `Config`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from livecap.errors import LivecapError

ENV_PREFIX = "LIVECAP_"
FORMATS = ("txt", "srt", "vtt", "json")


def _opt(default: Any, help: str, **rules: Any) -> Any:
    """A config field with its help text and validation rules (choices, min, max)."""
    return field(default=default, metadata={"help": help, **rules})


@dataclass(frozen=True)
class AsrConfig:
    model: str = _opt("tiny.en", "model name (tiny.en, base, any faster-whisper name), hub id or directory")
    device: str = _opt("cpu", "where ASR runs", choices=("cpu", "cuda", "auto"))
    compute_type: str = _opt(
        "default",
        "CTranslate2 compute type (default: int8 on CPU, float16 on CUDA)",
        choices=("default", "int8", "int8_float16", "int8_float32", "int16", "float16", "bfloat16", "float32"),
    )
    workers: int = _opt(2, "parallel ASR workers sharing one model", min=1, max=16)
    cpu_threads: int = _opt(0, "CPU threads per worker (0: cores / workers)", min=0, max=256)
    beam_size: int = _opt(1, "beam size (1 = greedy)", min=1, max=16)
    language: str | None = _opt(None, "spoken language code (none: detect)")
    task: str = _opt("transcribe", "Whisper task", choices=("transcribe", "translate"))


@dataclass(frozen=True)
class VadConfig:
    vad_threshold: float = _opt(0.5, "speech starts above this Silero probability", min=0.05, max=0.95)
    vad_neg_threshold: float = _opt(0.35, "speech ends below this probability", min=0.01, max=0.95)
    min_silence_ms: int = _opt(500, "silence that ends an utterance", min=32, max=10_000)
    speech_pad_ms: int = _opt(200, "audio kept before speech starts (pre-roll) and after it ends", min=0, max=2_000)
    min_speech_ms: int = _opt(200, "shorter bursts are ignored", min=0, max=5_000)
    max_utterance_s: float = _opt(15.0, "longer speech is cut at its quietest point", min=1.0, max=30.0)


@dataclass(frozen=True)
class LiveConfig:
    input_device: str | None = _opt(None, "input device index or name substring (none: default)")
    interim: bool = _opt(True, "show interim captions while speech goes on")
    interim_interval_ms: int = _opt(600, "least time between interim transcriptions of one utterance", min=100, max=10_000)
    max_pending_finals: int = _opt(6, "final utterances waiting for ASR before the VAD stage waits", min=1, max=256)
    capture_queue_s: float = _opt(30.0, "audio the capture queue holds before it drops (seconds)", min=1.0, max=600.0)


@dataclass(frozen=True)
class TranslateConfig:
    translate_to: str | None = _opt(None, "translate captions into this language code")
    translator: str = _opt("auto", "translation backend", choices=("auto", "whisper", "argos"))
    argos_index_url: str = _opt(
        "https://raw.githubusercontent.com/argosopentech/argospm-index/main/index.json",
        "Argos package index used by `livecap models install-translation --from/--to`",
    )


@dataclass(frozen=True)
class OutputConfig:
    output_dir: str = _opt(".", "where caption files are written")
    output_format: tuple[str, ...] = _opt(("txt", "srt", "vtt", "json"), "formats to write", choices=FORMATS)
    subtitle_text: str = _opt("original", "text in srt/vtt", choices=("original", "translation", "both"))


@dataclass(frozen=True)
class Config:
    asr: AsrConfig = field(default_factory=AsrConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def flat(self) -> dict[str, Any]:
        """Every key with its value."""
        return {key: getattr(getattr(self, section), key) for key, (section, _) in FIELDS.items()}


def _fields() -> dict[str, tuple[str, dataclasses.Field]]:
    table: dict[str, tuple[str, dataclasses.Field]] = {}
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):  # type: ignore[misc]
            assert f.name not in table, f"config key {f.name} is not unique"
            table[f.name] = (section.name, f)
    return table


FIELDS = _fields()
_TYPES = {
    key: get_type_hints(type(getattr(Config(), section)))[key] for key, (section, _) in FIELDS.items()
}


@dataclass(frozen=True)
class Resolved:
    """A resolved configuration and, for every key, the layer its value came from."""

    config: Config
    sources: dict[str, str]


def _coerce(key: str, value: Any, origin: str) -> Any:
    """Check one value against its key's type and rules; raise a one-line error naming the origin."""
    _, f = FIELDS[key]
    kind = _TYPES[key]
    rules = f.metadata
    where = f"{origin}: {key}"
    if value is None or (isinstance(value, str) and value.lower() in ("", "none") and "None" in str(kind)):
        if "None" in str(kind):
            return None
        raise LivecapError(f"{where} must be set (got nothing)")
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                value = value.lower() in ("1", "true", "yes", "on")
            elif not isinstance(value, bool):
                raise ValueError
        elif kind is int:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            value = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif "tuple" in str(kind):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ValueError
            value = tuple(str(item).strip().lower() for item in items if str(item).strip())
        elif not isinstance(value, str):
            raise ValueError
    except (TypeError, ValueError):
        raise LivecapError(f"{where} must be {_describe(kind)} (got {value!r})") from None
    choices = rules.get("choices")
    for item in value if isinstance(value, tuple) else (value,):
        if choices and item not in choices:
            raise LivecapError(f"{where} must be one of {', '.join(choices)} (got {item!r})")
    if "min" in rules and value < rules["min"] or "max" in rules and value > rules["max"]:
        raise LivecapError(f"{where} must be between {rules['min']} and {rules['max']} (got {value!r})")
    return value


def _describe(kind: Any) -> str:
    text = str(kind)
    for name, words in (("tuple", "a comma list"), ("bool", "true or false"), ("int", "a whole number"),
                        ("float", "a number"), ("str", "text")):
        if name in text:
            return words
    return text


def _layer_from_mapping(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Validate a profile or config file: sections ([asr], [vad], ...) or flat keys."""
    values: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, Mapping):
            for key, inner in value.items():
                if key not in FIELDS or FIELDS[key][0] != name:
                    raise LivecapError(f"{origin}: unknown key [{name}] {key}; allowed: {_allowed(name)}")
                values[key] = _coerce(key, inner, origin)
        elif name in FIELDS:
            values[name] = _coerce(name, value, origin)
        elif name not in ("description",):
            raise LivecapError(f"{origin}: unknown key {name}; allowed: {_allowed(None)}")
    return values


def _allowed(section: str | None) -> str:
    if section is not None and any(s == section for s, _ in FIELDS.values()):
        return ", ".join(k for k, (s, _) in FIELDS.items() if s == section)
    return ", ".join(FIELDS)


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


def profile_path(name_or_path: str) -> Path:
    """A profile by shipped name or by path to a TOML file."""
    shipped = list_profiles()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise LivecapError(f"profile {name_or_path}: no such file")
        return path
    raise LivecapError(f"unknown profile {name_or_path!r}; shipped profiles: {', '.join(shipped)}")


def user_config_path(env: Mapping[str, str]) -> Path:
    """The user config file (`LIVECAP_CONFIG` overrides the platform's config dir)."""
    if env.get(f"{ENV_PREFIX}CONFIG"):
        return Path(env[f"{ENV_PREFIX}CONFIG"]).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("livecap")) / "config.toml"


def resolve(
    profile: str | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Resolved:
    """Resolve the configuration from all layers; `flags` holds only options given on the command line."""
    env = os.environ if env is None else env
    layers: list[tuple[str, dict[str, Any]]] = []
    profile = profile or env.get(f"{ENV_PREFIX}PROFILE") or "default"
    path = profile_path(profile)
    layers.append((f"profile {path.stem}" if path.parent == profiles_dir() else f"profile {path}", read_toml(path)))
    user_path = user_config_path(env)
    if user_path.is_file():
        layers.append((f"user config {user_path}", read_toml(user_path)))
    env_values = {
        key: _coerce(key, env[f"{ENV_PREFIX}{key.upper()}"], f"environment {ENV_PREFIX}{key.upper()}")
        for key in FIELDS
        if f"{ENV_PREFIX}{key.upper()}" in env
    }
    layers.append(("environment", env_values))
    layers.append(("command line", {k: _coerce(k, v, f"--{k.replace('_', '-')}") for k, v in (flags or {}).items()}))

    values = Config().flat()
    sources = dict.fromkeys(values, "default")
    for origin, layer in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = origin
    if values["vad_neg_threshold"] > values["vad_threshold"]:
        raise LivecapError(
            f"{sources['vad_neg_threshold']}: vad_neg_threshold must not exceed vad_threshold "
            f"({values['vad_neg_threshold']} > {values['vad_threshold']})"
        )
    sections = {
        f.name: f.default_factory(**{k: values[k] for k, (s, _) in FIELDS.items() if s == f.name})  # type: ignore[misc]
        for f in dataclasses.fields(Config)
    }
    return Resolved(Config(**sections), sources)
