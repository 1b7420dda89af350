"""Word error rate on normalised text (jiwer does the alignment)."""

from __future__ import annotations

import re
import unicodedata

_SPELLING = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay"}


def normalize(text: str) -> str:
    """Lower case, no punctuation or accents-as-separators, common abbreviations spelled out."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = re.sub(r"[-‐–—/]", " ", text)
    text = re.sub(r"[^\w\s']", "", text)
    text = re.sub(r"'(?!\w)|(?<!\w)'", "", text)
    return " ".join(_SPELLING.get(word, word) for word in text.split())


def wer(reference: str, hypothesis: str) -> float:
    """WER of one hypothesis against one reference, both normalised."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or "<empty>"))
