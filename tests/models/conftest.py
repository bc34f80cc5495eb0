"""A tiny CLIP for fast model tests (16 px images, 2 + 1 layers)."""

import numpy as np

from keras_clip.models.builder import build_clip

TINY = {
    "embed_dim": 16,
    "image_encoder": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    "text_encoder": {"vocabulary_size": 20, "context_length": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    "end_token_id": 3,
    "start_token_id": 2,
}


def tiny_clip(**overrides):
    config = {**TINY, **overrides}
    return build_clip(config)


def tiny_batch(batch=4, seed=0, length=8, vocab=20):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, 16, 16, 3)).astype("uint8")
    token_ids = np.zeros((batch, length), "int32")
    for i in range(batch):
        n = int(rng.integers(1, length - 2))
        token_ids[i, 0] = 2
        token_ids[i, 1 : 1 + n] = rng.integers(4, vocab, n)
        token_ids[i, 1 + n] = 3
    return {"images": images, "token_ids": token_ids}


import pytest  # noqa: E402


@pytest.fixture(name="tiny_clip")
def _tiny_clip_fixture():
    return tiny_clip


@pytest.fixture(name="tiny_batch")
def _tiny_batch_fixture():
    return tiny_batch
