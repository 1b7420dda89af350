"""Speaker labels on the test conversations (livecap.bench.speakers): diarization error (pyannote
.metrics, 0.25 s collar), speakers found, and CPU seconds per audio second of the labelling.

    .venv/bin/python scripts/diarize_eval.py [--hint] [--out DIR]

`--hint` gives the true speaker count (`--speakers N`); without it the count is found.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import os

    from livecap.bench.speakers import CONVERSATIONS, build_conversation, diarization_error
    from livecap.diarize.cluster import Hints
    from livecap.diarize.files import decode, diarize_audio
    from livecap.diarize.model import shared_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hint", action="store_true", help="give the true speaker count")
    parser.add_argument("--out", type=Path, default=None, help="keep the conversations here")
    args = parser.parse_args()
    shared = Path(os.environ.get("LIVECAP_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
    out = args.out or Path(tempfile.mkdtemp(prefix="livecap-speakers-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.process_time()
    shared_model()
    print(f"model load: {time.process_time() - started:.1f} CPU s")
    print(f"{'conversation':<14}{'audio s':>9}{'speakers':>10}{'found':>7}{'DER':>8}{'CPU/audio s':>13}")
    for name in CONVERSATIONS:
        conversation = build_conversation(name, shared, out / f"{name}.wav")
        audio = decode(conversation.path)
        hints = Hints(speakers=conversation.speakers) if args.hint else Hints()
        started = time.process_time()
        turns = diarize_audio(audio, hints)
        cpu = time.process_time() - started
        error = diarization_error(conversation.reference, [(t.start, t.end, t.speaker) for t in turns])
        seconds = len(audio) / 16000
        print(f"{name:<14}{seconds:>9.1f}{conversation.speakers:>10}{len({t.speaker for t in turns}):>7}"
              f"{error:>8.1%}{cpu / seconds:>13.3f}")


if __name__ == "__main__":
    main()
