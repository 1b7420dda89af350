"""`livecap serve`: live captions over WebSocket, shared sessions (one source captioned
once for many viewers, sessions.py) and OpenAI-compatible file transcription over HTTP.

Built on FastAPI and uvicorn (`pip install 'livecap[server]'`). The server shares one `Engine` (one
model, one ASR pool) between every connection; it never imports the command line.
"""
