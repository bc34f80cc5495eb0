"""`CLIP.from_preset(CHECKPOINT)`: the same model as `keras-clip convert` then
`CLIP.from_preset(RUN_DIR)` (identical embeddings), within 1e-4 of the reference."""

import os
import subprocess
import sys

import numpy as np
import pytest
from keras import ops

import keras_clip
from keras_clip.cli import main as keras_clip_cli
from pretrained_helpers import RESULTS, SMALL_OPEN_CLIP, make_inputs, reference_pixels


def _embeddings(model, images, tokens):
    return (
        ops.convert_to_numpy(model.encode_image(images, normalize=False)),
        ops.convert_to_numpy(model.encode_text(tokens, normalize=False)),
    )


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _check_reference(embeddings, ref_image, ref_text, label):
    """Unnormalised embeddings within 1e-4 of the reference, identical logits argmax
    (a lean `check_parity`: one call per tower, test time is tight)."""
    import keras

    image, text = embeddings
    diffs = [float(np.abs(image - ref_image).max()), float(np.abs(text - ref_text).max())]
    RESULTS.append((label, keras.backend.backend(), *diffs))
    assert max(diffs) < 1e-4, f"{label}: image / text differ from the reference by {diffs}"
    logits, ref_logits = _unit(image) @ _unit(text).T, _unit(ref_image) @ _unit(ref_text).T
    for axis in (0, 1):
        np.testing.assert_array_equal(logits.argmax(axis), ref_logits.argmax(axis))


def _same_as_convert(model, embeddings, source, tmp_path, images, tokens, convert_args=()):
    """`keras-clip convert SOURCE` then `CLIP.from_preset(RUN)`: bit-identical weights, embeddings and tokenizer."""
    run_dir = os.path.join(tmp_path, "run")
    assert keras_clip_cli(["convert", os.fspath(source), "--output", run_dir, *convert_args]) == 0
    converted = keras_clip.CLIP.from_preset(run_dir)
    assert len(model.weights) == len(converted.weights)
    for got, want in zip(model.get_weights(), converted.get_weights()):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(embeddings, _embeddings(converted, images, tokens)):
        np.testing.assert_array_equal(got, want)
    assert type(model.tokenizer).__name__ == type(converted.tokenizer).__name__ == "CLIPTokenizer"
    texts = ["a photo of a cat", "Crème brûlée &amp; 東京"]
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model.tokenizer(texts)), ops.convert_to_numpy(converted.tokenizer(texts))
    )


def test_from_preset_open_clip_state_dict(open_clip, torch, tmp_path, capsys):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = open_clip.CLIP(**SMALL_OPEN_CLIP, quick_gelu=False).eval()
    path = os.path.join(tmp_path, "small.safetensors")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    images, tokens = make_inputs(64, 16, n=8)  # 8 x 8 logits (test_parity.py checks 32 x 32)
    ref_image = reference.encode_image(torch.from_numpy(reference_pixels(images))).numpy()
    ref_text = reference.encode_text(torch.from_numpy(tokens.astype("int64"))).numpy()

    model = keras_clip.CLIP.from_preset(path, activation="gelu")
    said = capsys.readouterr().out
    assert "activation gelu" in said and "the default" not in said and "CLIPTokenizer" in said
    assert model.image_encoder.intermediate_activation == "gelu" and model.context_length == 16
    embeddings = _embeddings(model, images, tokens)
    _check_reference(embeddings, ref_image, ref_text, "open_clip small via CLIP.from_preset")
    _same_as_convert(model, embeddings, path, tmp_path, images, tokens, ["--activation", "gelu"])


@pytest.mark.slow  # the fast suite has the state-dict case; test_parity.py checks HF import fast
def test_from_preset_hugging_face_folder(hf_clip, torch, tmp_path):
    vision, text = SMALL_OPEN_CLIP["vision_cfg"], SMALL_OPEN_CLIP["text_cfg"]
    config = hf_clip.CLIPConfig(
        text_config=dict(
            hidden_size=text["width"], intermediate_size=4 * text["width"], num_hidden_layers=text["layers"],
            num_attention_heads=text["heads"], max_position_embeddings=text["context_length"],
        ),
        vision_config=dict(
            hidden_size=vision["width"], intermediate_size=4 * vision["width"], num_hidden_layers=vision["layers"],
            num_attention_heads=2, image_size=vision["image_size"], patch_size=vision["patch_size"],
        ),
        projection_dim=SMALL_OPEN_CLIP["embed_dim"],
    )
    torch.manual_seed(1)
    reference = hf_clip.CLIPModel(config).eval()
    folder = os.path.join(tmp_path, "hf")
    reference.save_pretrained(folder)
    images, tokens = make_inputs(vision["image_size"], text["context_length"], n=8, seed=1)

    def features(out):
        return (out if hasattr(out, "numpy") else out.pooler_output).numpy()

    ref_image = features(reference.get_image_features(pixel_values=torch.from_numpy(reference_pixels(images))))
    ref_text = features(reference.get_text_features(input_ids=torch.from_numpy(tokens.astype("int64"))))
    model = keras_clip.CLIP.from_preset(folder)
    embeddings = _embeddings(model, images, tokens)
    _check_reference(embeddings, ref_image, ref_text, "HF CLIPModel via CLIP.from_preset")
    _same_as_convert(model, embeddings, folder, tmp_path, images, tokens)


def test_from_preset_errors(tmp_path):
    missing = os.path.join(tmp_path, "nowhere", "ViT-B-32.pt")
    with pytest.raises(FileNotFoundError, match="nowhere/ViT-B-32.pt"):
        keras_clip.CLIP.from_preset(missing)
    with pytest.raises(FileNotFoundError, match="ViT-B-32.safetensors"):
        keras_clip.CLIP.from_preset("ViT-B-32.safetensors")
    empty = os.path.join(tmp_path, "empty")
    os.makedirs(empty)
    with pytest.raises(ValueError, match="neither a Hugging Face"):
        keras_clip.CLIP.from_preset(empty)
    checkpoint = os.path.join(tmp_path, "model.safetensors")
    with open(checkpoint, "wb") as f:
        f.write(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"takes only .*'activation'.*received \['width'\]"):
        keras_clip.CLIP.from_preset(checkpoint, width=64)
    with pytest.raises(ValueError, match="activation must be one of"):
        keras_clip.CLIP.from_preset(checkpoint, activation="relu")


@pytest.mark.slow  # a fresh process importing TensorFlow, Keras and torch (~30 s)
def test_from_preset_checkpoint_in_lazy_import_mode(open_clip, torch, tmp_path):
    """KERAS_CLIP_LAZY_IMPORT=1 (the CLI's mode): `keras_clip.CLIP` registers the
    importer on first use; `keras_clip.models.CLIP` alone says what to import.
    One backend is enough (the import order is backend independent)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("checked once, under the TensorFlow backend")
    torch.manual_seed(0)
    path = os.path.join(tmp_path, "small.pt")
    torch.save(open_clip.CLIP(**SMALL_OPEN_CLIP, quick_gelu=True).state_dict(), path)
    code = (
        "import sys, keras_clip.models as m\n"
        "assert 'keras_clip.pretrained' not in sys.modules\n"
        f"try:\n    m.CLIP.from_preset({path!r})\n"
        "except ImportError as e:\n    assert 'import keras_clip.pretrained' in str(e), e\n"
        "else:\n    raise AssertionError('no ImportError')\n"
        "import keras_clip\n"
        f"model = keras_clip.CLIP.from_preset({path!r})\n"
        "assert model.image_encoder.intermediate_activation == 'quick_gelu'\n"
    )
    env = dict(os.environ, KERAS_CLIP_LAZY_IMPORT="1")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "activation quick_gelu (the default" in result.stdout
