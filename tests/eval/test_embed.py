"""Batched encoding, and the cached encoder views it leaves on the model."""

import keras
import numpy as np

from keras_clip.eval import embed
from keras_clip.models.builder import build_clip

TINY = {
    "embed_dim": 8,
    "image_encoder": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    "text_encoder": {"vocabulary_size": 20, "context_length": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    "end_token_id": 3,
}


def test_embeddings_match_the_model_and_load_weights_still_works(tmp_path):
    """Encoding caches views on the model; loading weights afterwards must
    neither recurse through them nor leave the views on stale weights."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 16, 16, 3)).astype("uint8")
    tokens = np.array([[2, 5, 6, 3, 0, 0, 0, 0]] * 3, "int32")
    model = build_clip(TINY)
    np.testing.assert_allclose(
        embed.embed_images(model, images, batch_size=2),
        keras.ops.convert_to_numpy(model.encode_image(images)), atol=1e-5,
    )
    path = str(tmp_path / "a.weights.h5")
    model.save_weights(path)
    before = embed.embed_texts(model, tokens)
    other = build_clip(TINY)  # different random weights
    model.set_weights(other.get_weights())
    changed = embed.embed_texts(model, tokens)
    assert not np.allclose(changed, before, atol=1e-4)
    model.load_weights(path)
    np.testing.assert_allclose(embed.embed_texts(model, tokens), before, atol=1e-6)
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_allclose(embed.embed_texts(loaded, tokens), before, atol=1e-6)
