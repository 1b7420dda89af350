"""Audio sources (file, microphone, network) and the bounded capture queue."""
