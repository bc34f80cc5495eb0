"""Patch dropout (FLIP): nothing dropped at inference (the plain encoder's
output exactly); in training 1 + round((1 - p) P) tokens, the class token
first and the rest distinct patch rows of the embeddings in order, drawn per
example; saved and loaded; replayed by the micro-batched step."""

import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_clip.models import VisionEncoder
from keras_clip.models.presets import vit_image_encoder
from tests.models.conftest import TINY, tiny_batch, tiny_clip
from tests.models.test_micro_batch import K, _ChunkedCallCLIP

ARGS = dict(image_size=32, patch_size=8, width=16, layers=1, heads=2, mlp_dim=32)  # P = 16


def _images(n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 32, 32, 3)).astype("float32")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_inference_equals_the_plain_encoder_exactly():
    keras.utils.set_random_seed(0)
    encoder = vit_image_encoder(**ARGS, patch_dropout=0.5)
    plain = vit_image_encoder(**ARGS)
    assert isinstance(encoder, VisionEncoder) and type(plain) is keras_hub.models.CLIPVisionEncoder
    assert [w.path for w in encoder.weights] == [w.path for w in plain.weights]  # pretrained maps as before
    plain.set_weights(encoder.get_weights())
    images = _images()
    want = _np(plain({"images": images}, training=False))
    np.testing.assert_array_equal(_np(encoder({"images": images}, training=False)), want)


@pytest.mark.parametrize(
    "rate,kept", [(0.75, 4), pytest.param(0.5, 8, marks=pytest.mark.slow), pytest.param(0.9, 2, marks=pytest.mark.slow)]
)
def test_training_keeps_the_class_token_and_a_random_subset_of_patches(rate, kept):
    keras.utils.set_random_seed(0)
    encoder = vit_image_encoder(**ARGS, patch_dropout=rate)
    assert encoder.kept_patches == kept == 1 + round((1 - rate) * 16) - 1
    images = _images(8)
    assert tuple(encoder({"images": images}, training=True).shape) == (8, 1 + kept, 16)
    embedded = _np(encoder.embedding(images))  # (8, 17, 16): class + 16 patches, positions added
    dropped = _np(encoder.drop_patches(keras.ops.convert_to_tensor(embedded)))
    assert dropped.shape == (8, 1 + kept, 16)
    subsets = set()
    for example, rows in zip(embedded, dropped):
        np.testing.assert_array_equal(rows[0], example[0])  # class token kept
        index = [int(np.flatnonzero((example == row).all(axis=1))[0]) for row in rows[1:]]
        assert all(i >= 1 for i in index) and index == sorted(set(index)), index
        subsets.add(tuple(index))
    assert len(subsets) > 1, "every example dropped the same patches"


@pytest.mark.slow
def test_training_output_is_the_blocks_over_the_kept_tokens():
    keras.utils.set_random_seed(0)
    encoder = vit_image_encoder(**ARGS, patch_dropout=0.5)
    images = _images()
    state = _np(encoder.seed_generator.state)
    got = _np(encoder({"images": images}, training=True))
    encoder.seed_generator.state.assign(state)  # the same draw again
    x = encoder.drop_patches(encoder.embedding(images))
    x = encoder.pre_layer_norm(x)
    for block in encoder.encoder_layers:
        x = block(x)
    np.testing.assert_allclose(got, _np(encoder.layer_norm(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_saved_and_loaded(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_clip(image_encoder={**TINY["image_encoder"], "patch_dropout": 0.5})
    batch = tiny_batch()
    want = _np(model(batch, training=False)["image_embeddings"])
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.image_encoder, VisionEncoder) and loaded.image_encoder.patch_dropout == 0.5
    np.testing.assert_array_equal(_np(loaded(batch, training=False)["image_embeddings"]), want)


def test_bad_rate_is_a_clear_error():
    with pytest.raises(ValueError, match=r"patch_dropout must be a fraction in \[0, 1\).*1.0"):
        vit_image_encoder(**ARGS, patch_dropout=1.0)


@pytest.mark.slow  # two eager steps; ~60 s on a busy CPU
def test_micro_batched_step_replays_the_patch_draws():
    keras.utils.set_random_seed(0)
    config = {**TINY, "image_encoder": {**TINY["image_encoder"], "image_size": 32, "patch_dropout": 0.5}}

    def build(cls):
        towers = tiny_clip(**config)
        return cls(towers.image_encoder, towers.text_encoder, embed_dim=16, end_token_id=3, start_token_id=2,
                   name=cls.__name__.strip("_").lower())

    reference, model = build(_ChunkedCallCLIP), build(keras.saving.get_registered_object("keras_clip>CLIP"))
    for target, source in zip(model.variables, reference.variables):
        target.assign(_np(source.value))
    batch = tiny_batch(batch=8, seed=3)
    batch["images"] = np.random.default_rng(3).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    reference.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    model.compile(optimizer=keras.optimizers.SGD(0.5), micro_batches=K, jit_compile=False)
    want = reference.train_on_batch(batch, return_dict=True)
    got = model.train_on_batch(batch, return_dict=True)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    for a, b in zip(model.trainable_weights, reference.trainable_weights):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-5, err_msg=a.path)
