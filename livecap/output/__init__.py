"""Caption files, subtitles and the one JSON form of each event."""
