"""A tiny CLIP with a tokenizer, trained a few steps on the current backend (shared by the export tests)."""

import keras
import numpy as np

from keras_clip.data import CaptionTokenizer
from keras_clip.models.builder import build_clip

TINY_CONFIG = {
    "embed_dim": 16,
    "image_encoder": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    "text_encoder": {"vocabulary_size": 20, "context_length": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
}
CAPTIONS = ["a red circle", "a blue square", "a small green triangle", "two red squares left of a circle"]
CLASS_NAMES = ["red circle", "blue square", "green triangle"]
TEMPLATES = ["a {}", "a small {}"]


def train_tiny_model(steps=2, batch_size=4):
    """Builds the tiny model and fits it `steps` steps on random pixels and real captions."""
    keras.utils.set_random_seed(0)
    tokenizer = CaptionTokenizer.from_corpus(CAPTIONS, context_length=8)
    model = build_clip(TINY_CONFIG, tokenizer=tokenizer)
    rng = np.random.default_rng(0)
    n = steps * batch_size
    data = {
        "images": rng.uniform(0, 255, (n, 16, 16, 3)).astype("float32"),
        "token_ids": np.asarray(tokenizer([CAPTIONS[i % len(CAPTIONS)] for i in range(n)]), "int32"),
    }
    model.compile(optimizer="adam")
    history = model.fit(data, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 1
    return model
