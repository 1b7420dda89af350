"""livecap: real-time speech transcription and translation in the terminal."""

from livecap.api import transcribe
from livecap.engine import Engine
from livecap.config import Config, resolve

__all__ = ["Config", "Engine", "resolve", "transcribe"]
__version__ = "0.1.0"
