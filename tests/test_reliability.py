"""Misuse gets a clear error or warning, on every backend: loading a run
after a bare `import keras_clip`, a quiet `--help`, images scaled to [0, 1],
ambiguous preset overrides, empty batches, NaN embeddings."""

import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_clip
from keras_clip.eval import retrieval_metrics, topk_accuracy
from keras_clip.eval.retrieval import NonFiniteEmbeddingsError
from keras_clip.losses import InfoNCE

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _tiny(**overrides):
    tokenizer = keras_clip.CaptionTokenizer.from_corpus(["a red circle", "a blue square"], context_length=8)
    config = {"image_encoder.layers": 1, "text_encoder.layers": 1, **overrides}
    return keras_clip.CLIP.from_preset("shapes", tokenizer=tokenizer, **config)


def test_a_saved_run_loads_after_a_bare_package_import(tmp_path):
    model = _tiny()
    model.save(str(tmp_path / "model.keras"))
    code = (
        "import keras_clip; m = keras_clip.CLIP.from_preset(%r); "
        "print(type(m.tokenizer).__name__, m.tokenizer.vocabulary_size)" % str(tmp_path)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["CaptionTokenizer", str(model.tokenizer.vocabulary_size)]
    # Keras' own loader too, after nothing but `import keras_clip`.
    code = "import keras, keras_clip; m = keras.saving.load_model(%r); print(type(m).__name__)" % str(
        tmp_path / "model.keras"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["CLIP"]


def test_help_imports_no_backend():
    code = (
        "import sys, contextlib, io\n"
        "import keras_clip_cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: keras_clip_cli.main(['train', '--help'])\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]" and out.stderr == ""


def test_images_in_unit_range_warn_once():
    model = _tiny()
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode_image(pixels)  # [0, 255]: no warning
    assert not [w for w in caught if "lies within [0, 1]" in str(w.message)]
    model = _tiny()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode_image(pixels / 255.0)
        model.encode_image(pixels / 255.0)
    hits = [w for w in caught if "lies within [0, 1]" in str(w.message)]
    assert len(hits) == 1 and "images * 255" in str(hits[0].message)


def test_an_override_of_both_towers_must_say_which():
    with pytest.raises(ValueError, match=r"'width' exists in both towers.*'image_encoder.width' or 'text_encoder.width'"):
        keras_clip.CLIP.from_preset("shapes", width=16, vocabulary_size=50)
    model = keras_clip.CLIP.from_preset(
        "shapes", vocabulary_size=50, **{"image_encoder.width": 32, "image_encoder.layers": 1, "text_encoder.layers": 1}
    )
    assert model.image_encoder.output_shape[-1] == 32 and model.text_encoder.output_shape[-1] == 64
    assert model.vocabulary_size == 50  # a key of one tower only may be bare
    with pytest.raises(ValueError, match="Unknown model override 'widht'"):
        keras_clip.CLIP.from_preset("shapes", widht=16)


def test_an_empty_batch_is_a_clear_error():
    model = _tiny()
    empty = {"images": np.zeros((0, 32, 32, 3), "float32"), "token_ids": np.zeros((0, 8), "int32")}
    with pytest.raises(ValueError, match="empty batch"):
        model(empty)
    with pytest.raises(ValueError, match="empty batch"):
        InfoNCE()(None, {"image_embeddings": np.zeros((0, 4), "float32"),
                         "text_embeddings": np.zeros((0, 4), "float32"), "logit_scale": 10.0})


def test_nan_embeddings_are_never_scored():
    good = np.eye(8, dtype="float32")
    assert retrieval_metrics(good, good)["image_to_text_R@1"] == 1.0
    bad = good.copy()
    bad[3, 0] = np.nan
    with pytest.raises(NonFiniteEmbeddingsError, match=r"image embeddings contain NaN or inf \(1 of 8 rows\)"):
        retrieval_metrics(bad, good)
    with pytest.raises(NonFiniteEmbeddingsError, match="text embeddings"):
        retrieval_metrics(good, np.full((8, 8), np.nan))
    with pytest.raises(NonFiniteEmbeddingsError, match="zero-shot scores"):
        topk_accuracy(np.full((4, 3), np.nan), np.zeros(4, "int64"))
