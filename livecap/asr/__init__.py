"""Speech recognition: the backend protocol, Whisper, model lookup and the worker pool."""
