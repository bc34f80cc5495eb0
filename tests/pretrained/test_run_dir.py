"""An imported model saved as a run directory loads back with the same embeddings."""

import os

import numpy as np
import yaml
from keras import ops

import keras_clip
from keras_clip.config import load_config
from keras_clip.models.builder import load_run_model
from keras_clip.pretrained import TextEncoder, load_checkpoint, save_run
from pretrained_helpers import SMALL_OPEN_CLIP, make_inputs


def _embeddings(model, images, tokens):
    return (
        ops.convert_to_numpy(model.encode_image(images, normalize=False)),
        ops.convert_to_numpy(model.encode_text(tokens, normalize=False)),
    )


def test_save_run_round_trip(open_clip, torch, tmp_path):
    torch.manual_seed(0)
    reference = open_clip.CLIP(**SMALL_OPEN_CLIP, quick_gelu=True)
    checkpoint = os.path.join(tmp_path, "small.pt")
    torch.save(reference.state_dict(), checkpoint)
    model, config = load_checkpoint(checkpoint, return_config=True)
    run_dir = save_run(model, os.path.join(tmp_path, "run"), config, source={"path": checkpoint})
    assert sorted(os.listdir(run_dir)) == ["config.yaml", "import.json", "model.keras"]

    saved = load_config(os.path.join(run_dir, "config.yaml"))
    # The saved config is the import's, completed with the defaults of keys it does not set.
    assert saved["model"]["image_encoder"] == {"patch_dropout": 0.0, **config["image_encoder"]}
    assert saved["model"]["text_encoder"] == config["text_encoder"]
    assert saved["model"]["end_token_id"] == 49407
    with open(os.path.join(run_dir, "config.yaml")) as f:
        assert set(yaml.safe_load(f)) == {"model", "data", "training", "loss", "eval"}

    images, tokens = make_inputs(64, 16, n=4)
    expected = _embeddings(model, images, tokens)
    for loaded in (keras_clip.CLIP.from_preset(run_dir), load_run_model(run_dir)):
        assert isinstance(loaded.text_encoder, TextEncoder)
        assert loaded.text_encoder.final_layer_norm_epsilon == 1e-5
        for got, want in zip(_embeddings(loaded, images, tokens), expected):
            np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(
            ops.convert_to_numpy(loaded.image_encoder.embedding.position_ids)[0], np.arange(17)
        )


def test_tokenizer_is_attached_and_saved(open_clip, torch, tmp_path):
    from keras_clip.tokenizers import CaptionTokenizer

    torch.manual_seed(0)
    reference = open_clip.CLIP(**SMALL_OPEN_CLIP, quick_gelu=True)
    checkpoint = os.path.join(tmp_path, "small.pt")
    torch.save(reference.state_dict(), checkpoint)
    # A word-level stand-in with the BPE vocabulary's size (49408 ids).
    tokenizer = CaptionTokenizer([f"w{i}" for i in range(49404)], context_length=16)
    model = load_checkpoint(checkpoint, tokenizer=tokenizer)
    assert model.tokenizer is tokenizer and model.end_token_id == tokenizer.end_token_id
    run_dir = save_run(model, os.path.join(tmp_path, "run"))
    assert os.path.isdir(os.path.join(run_dir, "tokenizer"))
    loaded = keras_clip.CLIP.from_preset(run_dir)
    np.testing.assert_array_equal(loaded.tokenizer(["w5 w7"]), tokenizer(["w5 w7"]))


def test_import_keras_clip_registers_the_text_encoder():
    """A saved import names `keras_clip>TextEncoder`: `import keras_clip` alone
    (a fresh process) must register it, or `CLIP.from_preset(run_dir)` fails.
    One backend is enough (the import is backend independent)."""
    import subprocess
    import sys

    import keras
    import pytest

    if keras.backend.backend() != "tensorflow":
        pytest.skip("checked once, under the TensorFlow backend")
    code = (
        "import keras, keras_clip; "
        "assert keras.saving.get_registered_object('keras_clip>TextEncoder') is not None"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
