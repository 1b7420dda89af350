"""livecap: real-time speech transcription and translation in the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livecap.api import transcribe
    from livecap.config import Config, resolve
    from livecap.engine import Engine

__all__ = ["Config", "Engine", "resolve", "transcribe"]
__version__ = "0.1.0"
_HOMES = {
    "Config": "livecap.config",
    "Engine": "livecap.engine",
    "resolve": "livecap.config",
    "transcribe": "livecap.api",
}


def __getattr__(name: str) -> Any:
    """Load the API on first use: `import livecap` (and so the command line) starts at once, and a
    Ctrl-C in its first moments meets the command line's handler, not a half-done import."""
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'livecap' has no attribute {name!r}")
