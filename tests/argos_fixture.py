"""Build a real, tiny ``.argosmodel`` package at test time (no downloads).

The package has the layout argostranslate expects of a real one::

    translate-de_en/
        metadata.json
        sentencepiece.model    # trained here on a few dozen lines
        model/                 # a CTranslate2 transformer (1+1 layers, d=16)

No sentence-splitter model (stanza/ or minisbd/) is bundled: livecap translates
each utterance as one segment and never runs argostranslate's splitter.

The transformer's weights are set by hand so that it always "translates" any
input sentence to one word, ``GREETINGS[to_code]``: the decoder's layers
contribute nothing, so each step's logits depend only on the previous token,
and the projection maps ``<s>`` to the greeting and the greeting to ``</s>``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

GREETINGS = {"de": "hallo", "en": "hello", "fr": "bonjour", "es": "hola"}

_CORPUS = """\
Guten Morgen, wie geht es dir heute?
Das Wetter ist schön und die Sonne scheint.
Ich habe heute keine Zeit, morgen vielleicht.
Wir treffen uns um acht Uhr am Bahnhof.
Der Zug hat leider zehn Minuten Verspätung.
Kannst du mir bitte das Salz geben?
Die Besprechung beginnt in fünf Minuten.
Vielen Dank für Ihre Aufmerksamkeit.
Good morning, how are you today?
The weather is nice and the sun is shining.
I have no time today, maybe tomorrow.
We meet at eight o'clock at the station.
The train is unfortunately ten minutes late.
Could you please pass me the salt?
The meeting starts in five minutes.
Thank you very much for your attention.
Bonjour, comment allez-vous aujourd'hui ?
Il fait beau et le soleil brille.
Nous nous retrouvons à huit heures à la gare.
Merci beaucoup pour votre attention.
Buenos días, ¿cómo estás hoy?
Hace buen tiempo y brilla el sol.
"""

_D_MODEL = 16


def isolate_argos(root: Path) -> None:
    """Import argostranslate with all its data dirs under ``root``, never the user's home.

    argostranslate reads its settings (and creates its dirs) once, at import, so
    this must run before anything imports ``argostranslate.settings``; the
    environment is restored afterwards.
    """
    if "argostranslate.settings" in sys.modules:
        raise RuntimeError("argostranslate was imported before its data dirs could be redirected")
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("ARGOS_")]:
            del os.environ[key]
        for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            os.environ[key] = str(root / key.lower())
        os.environ["ARGOS_PACKAGES_DIR"] = str(root / "packages")
        os.environ["ARGOS_PACKAGE_INDEX"] = "http://127.0.0.1:9/"  # never the public index
        from argostranslate import settings
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert settings.package_data_dir == root / "packages"


def build_argos_package(tmp_dir: Path, from_code: str = "de", to_code: str = "en") -> Path:
    """Build ``{from_code}_{to_code}.argosmodel`` in ``tmp_dir`` and return its path."""
    name = f"translate-{from_code}_{to_code}"
    pkg_dir = tmp_dir / "build" / name
    shutil.rmtree(pkg_dir, ignore_errors=True)
    pkg_dir.mkdir(parents=True)
    pieces = _train_sentencepiece(pkg_dir / "sentencepiece.model")
    _save_ctranslate2_model(pkg_dir / "model", pieces, GREETINGS[to_code])
    metadata = {
        "package_version": "1.0",
        "argos_version": "1.9.0",
        "from_code": from_code,
        "from_name": from_code.upper(),
        "to_code": to_code,
        "to_name": to_code.upper(),
    }
    (pkg_dir / "metadata.json").write_text(json.dumps(metadata, indent=2))
    archive = shutil.make_archive(
        str(tmp_dir / name), "zip", root_dir=pkg_dir.parent, base_dir=name
    )
    return Path(archive).replace(tmp_dir / f"{from_code}_{to_code}.argosmodel")


def _train_sentencepiece(path: Path) -> list[str]:
    """Train a unigram SentencePiece model (greetings as whole pieces); return its pieces by id."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS.splitlines()),
        model_writer=model,
        vocab_size=200,
        hard_vocab_limit=False,
        user_defined_symbols=list(GREETINGS.values()),
        normalization_rule_name="identity",
        num_threads=1,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def _save_ctranslate2_model(model_dir: Path, vocab: list[str], output_piece: str) -> None:
    """Write a CTranslate2 transformer whose greedy and beam output is always ``output_piece``."""
    from ctranslate2.specs import TransformerSpec, attention_spec, common_spec, transformer_spec

    spec = TransformerSpec.from_config((1, 1), num_heads=2)
    d, v = _D_MODEL, len(vocab)

    def zeros(*shape: int) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)

    def fill(layer: object) -> None:
        if isinstance(layer, common_spec.LayerNormSpec):
            layer.gamma, layer.beta = np.ones(d, dtype=np.float32), zeros(d)
        elif isinstance(layer, attention_spec.MultiHeadAttentionSpec):
            # self vs. cross attention
            fused = [3 * d, d] if len(layer.linear) == 2 else [d, 2 * d, d]
            for linear, rows in zip(layer.linear, fused, strict=True):
                linear.weight = zeros(rows, d)
            fill(layer.layer_norm)
        elif isinstance(layer, transformer_spec.FeedForwardSpec):
            layer.linear_0.weight, layer.linear_1.weight = zeros(2 * d, d), zeros(d, 2 * d)
            fill(layer.layer_norm)

    for stack in (spec.encoder, spec.decoder):
        fill(stack.layer_norm)
        for block in stack.layer:
            for part in vars(block).values():
                fill(part)
    # Embeddings: <s> on axis 0, the output piece on axis 1, all else on axis 2, each
    # scaled far above the position encodings; the projection then maps
    # <s> -> output piece -> </s>.
    start, output, end = vocab.index("<s>"), vocab.index(output_piece), vocab.index("</s>")
    embeddings = zeros(v, d)
    embeddings[:, 2] = 100.0
    embeddings[[start, output], 2] = 0.0
    embeddings[start, 0] = embeddings[output, 1] = 100.0
    spec.encoder.embeddings[0].weight = embeddings
    spec.decoder.embeddings.weight = embeddings
    projection = zeros(v, d)
    projection[output, 0] = projection[end, 1] = 10.0
    spec.decoder.projection.weight = projection
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)
    spec.validate()
    spec.optimize()
    model_dir.mkdir()
    spec.save(str(model_dir))
