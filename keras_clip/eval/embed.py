"""Batched encoding of many images or captions with a trained CLIP.

On JAX, encoding goes through `keras.Model.predict` on a small wrapper
model, so it runs as one compiled XLA program instead of op-by-op dispatch.
TensorFlow and PyTorch run the encoders eagerly, batch by batch: that is
fast enough there, and under PyTorch a `predict` wrapper called from a
callback inside `fit` overflowed Python's recursion limit after a few epochs.
"""

import keras
import numpy as np


class _Encoder(keras.Model):
    """`predict`-able view of one of CLIP's two encoders."""

    def __init__(self, clip, modality):
        super().__init__(name=f"{modality}_encoder_view")
        self.clip = clip
        self.modality = modality
        self.jit_compile = keras.backend.backend() == "jax"

    def call(self, x):
        if self.modality == "image":
            return self.clip.encode_image(x)
        return self.clip.encode_text(x)


class _EncoderCache:
    """The cached views of one model. A plain object on purpose: Keras'
    saving code walks a model's attributes into layers, lists and dicts, and
    a view (which points back to the model) reached that way made
    `model.load_weights` recurse without end."""

    def __init__(self):
        self.views = {}


def _encoder(model, modality):
    cache = model.__dict__.setdefault("_keras_clip_encoders", _EncoderCache())
    if modality not in cache.views:
        cache.views[modality] = _Encoder(model, modality)
    return cache.views[modality]


def _encode(model, modality, inputs, batch_size):
    if keras.backend.backend() == "jax":
        return np.asarray(_encoder(model, modality).predict(inputs, batch_size=batch_size, verbose=0), "float32")
    encode = model.encode_image if modality == "image" else model.encode_text
    parts = [
        keras.ops.convert_to_numpy(encode(inputs[start : start + batch_size]))
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(parts).astype("float32")


def embed_images(model, images, batch_size=256):
    """`(N, H, W, 3)` pixels in [0, 255] -> `(N, D)` float32 numpy embeddings."""
    images = np.asarray(images)
    if len(images) == 0:
        return np.zeros((0, model.embed_dim), "float32")
    model._check_images(images)
    return _encode(model, "image", images, batch_size)


def tokenize(model, texts, tokenizer=None):
    """Captions -> `(N, T)` int32 token ids with the model's tokenizer."""
    tokenizer = tokenizer or model.tokenizer
    if tokenizer is None:
        raise ValueError("Captions given as strings but the model has no tokenizer; pass tokenizer=... or token ids.")
    return np.asarray(tokenizer(list(texts)), dtype="int32")


def embed_texts(model, texts, batch_size=256, tokenizer=None):
    """Captions (list of str) or `(N, T)` token ids -> `(N, D)` float32 numpy embeddings."""
    if len(texts) == 0:
        return np.zeros((0, model.embed_dim), "float32")
    token_ids = tokenize(model, texts, tokenizer) if isinstance(texts[0], str) else np.asarray(texts, "int32")
    model._check_token_ids(token_ids)
    return _encode(model, "text", token_ids, batch_size)
