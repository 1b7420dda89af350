"""User-facing errors: one clear line, no traceback."""


class LivecapError(Exception):
    """An error whose message is shown to the user as one line, with a non-zero exit."""
