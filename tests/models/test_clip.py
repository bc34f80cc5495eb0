import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_clip
from keras_clip.models import EndTokenPooling


def _np(x):
    return ops.convert_to_numpy(x)


def test_outputs_are_normalised_and_match_encoders(tiny_clip, tiny_batch):
    model = tiny_clip()
    batch = tiny_batch(batch=5)
    out = model(batch)
    assert _np(out["image_embeddings"]).shape == (5, 16)
    assert _np(out["text_embeddings"]).shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(_np(out["image_embeddings"]), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(_np(out["text_embeddings"]), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(_np(out["logit_scale"]), 1 / 0.07, rtol=1e-6)
    np.testing.assert_allclose(_np(model.encode_image(batch["images"])), _np(out["image_embeddings"]), atol=1e-5)
    np.testing.assert_allclose(_np(model.encode_text(batch["token_ids"])), _np(out["text_embeddings"]), atol=1e-5)
    raw = _np(model.encode_text(batch["token_ids"], normalize=False))
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), _np(out["text_embeddings"]), atol=1e-5)


def test_uint8_and_float_images_give_the_same_embeddings(tiny_clip, tiny_batch):
    model = tiny_clip()
    images = tiny_batch()["images"]
    np.testing.assert_allclose(
        _np(model.encode_image(images)), _np(model.encode_image(images.astype("float32"))), atol=1e-6
    )


def test_end_token_pooling_finds_end_token_whatever_its_id():
    # End-of-text id 3 is NOT the largest id: argmax(token_ids) would pick id 9.
    pool = EndTokenPooling(end_token_id=3, pad_token_id=0)
    sequence = np.arange(2 * 5, dtype="float32").reshape(2, 5, 1)
    token_ids = np.array([[2, 9, 3, 0, 0], [2, 7, 8, 3, 0]])
    np.testing.assert_array_equal(_np(pool(sequence, token_ids))[:, 0], [2.0, 8.0])
    # A row without an end token falls back to its last non-padding token.
    np.testing.assert_array_equal(_np(pool.end_positions(np.array([[2, 9, 9, 0, 0]]))), [2])


def test_encode_text_pools_at_the_end_token_not_at_the_largest_id(tiny_clip):
    """The largest vocabulary id (19) comes BEFORE the end token (3): pooling
    at argmax(token_ids) would take the wrong position. Reference: the text
    head applied to the text encoder's output at the end-token position."""
    model = tiny_clip()
    ids = np.array(
        [[2, 19, 5, 3, 0, 0, 0, 0], [2, 7, 19, 8, 9, 3, 0, 0], [2, 19, 3, 0, 0, 0, 0, 0]], "int32"
    )
    end = np.argmax(ids == 3, axis=1)  # [3, 5, 2]
    sequence = _np(model.text_encoder({"token_ids": ids}))  # (B, T, W)
    at_end = sequence[np.arange(len(ids)), end]  # (B, W)
    want = _np(model.text_head(at_end))  # (B, D)
    # The positions argmax(token_ids) would pick give other embeddings.
    at_max = _np(model.text_head(sequence[np.arange(len(ids)), np.argmax(ids, axis=1)]))
    assert np.abs(at_max - want).max() > 1e-3
    np.testing.assert_allclose(_np(model.encode_text(ids, normalize=False)), want, rtol=1e-5, atol=1e-5)
    normalised = want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(_np(model.encode_text(ids)), normalised, atol=1e-5)
    images = np.zeros((3, 16, 16, 3), "uint8")
    np.testing.assert_allclose(_np(model({"images": images, "token_ids": ids})["text_embeddings"]), normalised, atol=1e-5)


def test_text_embedding_ignores_tokens_after_end_of_text(tiny_clip, tiny_batch):
    """Causal attention + pooling at end-of-text: what follows EOT can't matter."""
    model = tiny_clip()
    ids = tiny_batch()["token_ids"]
    changed = ids.copy()
    changed[:, -1] = np.where(changed[:, -1] == 0, 7, changed[:, -1])
    rows = np.argmax(ids == 3, axis=1) < ids.shape[1] - 1
    np.testing.assert_allclose(
        _np(model.encode_text(changed))[rows], _np(model.encode_text(ids))[rows], atol=1e-5
    )


def test_vision_position_ids_are_set(tiny_clip):
    """keras-hub creates them as zeros; every patch must get its own position."""
    model = tiny_clip()
    ids = _np(model.image_encoder.embedding.position_ids)
    np.testing.assert_array_equal(ids[0], np.arange(ids.shape[1]))


@pytest.mark.parametrize(
    "preset, expected",
    [("vit-b-32", 151_277_313), ("vit-b-16", 149_620_737), ("vit-l-14", 427_616_513)],
)
def test_openai_architectures_have_openai_parameter_counts(preset, expected):
    model = keras_clip.CLIP.from_preset(preset)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected


def test_from_preset_yaml_and_overrides(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "model:\n  embed_dim: 8\n  image_encoder: {image_size: 16, patch_size: 8, width: 8, layers: 1, heads: 1, mlp_dim: 8}\n"
        "  text_encoder: {vocabulary_size: 11, context_length: 6, width: 8, layers: 1, heads: 1, mlp_dim: 8}\n"
        "  end_token_id: 3\n"
    )
    model = keras_clip.CLIP.from_preset(str(path), vocabulary_size=13)
    assert model.embed_dim == 8 and model.vocabulary_size == 13 and model.image_shape == (16, 16, 3)


def test_from_preset_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown preset 'vit-b-99'.*vit-b-32"):
        keras_clip.CLIP.from_preset("vit-b-99")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        keras_clip.CLIP.from_preset(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  embed_dims: 8\n")
    with pytest.raises(KeyError, match="embed_dims.*embed_dim"):
        keras_clip.CLIP.from_preset(str(bad))


def test_mlp_heads(tiny_clip, tiny_batch):
    model = tiny_clip(image_head={"kind": "mlp", "hidden_dims": [24], "normalization": "layer"}, text_head="mlp")
    out = model(tiny_batch())
    assert _np(out["image_embeddings"]).shape == (4, 16)
    assert [w.shape for w in model.image_head.weights if "kernel" in w.path] == [(16, 24), (24, 16)]


# ---------------------------------------------------------------- bad inputs
def test_batch_mismatch_error(tiny_clip, tiny_batch):
    batch = tiny_batch(batch=8)
    batch["token_ids"] = batch["token_ids"][:6]
    with pytest.raises(ValueError, match="images has batch 8 but token_ids has batch 6"):
        tiny_clip()(batch)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 16, 16), "uint8"), r"received shape \(2, 16, 16\)"),
        (np.zeros((2, 16, 16, 4), "uint8"), r"received shape \(2, 16, 16, 4\)"),
        (np.zeros((2, 32, 32, 3), "uint8"), "images are 32x32 but this model expects 16x16"),
    ],
)
def test_bad_image_shapes(tiny_clip, tiny_batch, images, match):
    batch = tiny_batch(batch=2)
    batch["images"] = images
    with pytest.raises(ValueError, match=match):
        tiny_clip()(batch)


def test_float_token_ids_error(tiny_clip, tiny_batch):
    batch = tiny_batch()
    batch["token_ids"] = batch["token_ids"].astype("float32")
    with pytest.raises(TypeError, match="token_ids must be integers; received dtype float32"):
        tiny_clip()(batch)


def test_token_id_out_of_vocabulary_error(tiny_clip, tiny_batch):
    batch = tiny_batch()
    batch["token_ids"][0, 1] = 20
    with pytest.raises(ValueError, match="contain id 20 but the vocabulary has 20 entries"):
        tiny_clip()(batch)


def test_missing_input_key_error(tiny_clip, tiny_batch):
    batch = tiny_batch()
    del batch["token_ids"]
    with pytest.raises(KeyError, match="lack \\['token_ids'\\]"):
        tiny_clip()(batch)


def test_logit_scale_bounds_are_validated():
    with pytest.raises(ValueError, match="init_scale=200"):
        keras_clip.LogitScale(init_scale=200, max_scale=100)
