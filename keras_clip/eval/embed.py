"""Batched encoding of many images or captions with a trained CLIP."""

import numpy as np
from keras import ops


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def embed_images(model, images, batch_size=256):
    """`(N, H, W, 3)` pixels in [0, 255] -> `(N, D)` float32 numpy embeddings."""
    images = np.asarray(images)
    if len(images) == 0:
        return np.zeros((0, model.embed_dim), "float32")
    parts = [ops.convert_to_numpy(model.encode_image(images[s])) for s in _batches(len(images), batch_size)]
    return np.concatenate(parts).astype("float32")


def embed_texts(model, texts, batch_size=256, tokenizer=None):
    """Captions (list of str) or `(N, T)` token ids -> `(N, D)` float32 numpy embeddings."""
    if len(texts) == 0:
        return np.zeros((0, model.embed_dim), "float32")
    if isinstance(texts[0], str):
        tokenizer = tokenizer or model.tokenizer
        if tokenizer is None:
            raise ValueError(
                "Captions given as strings but the model has no tokenizer; pass "
                "tokenizer=... or token ids."
            )
        token_ids = np.asarray(tokenizer(list(texts)), dtype="int32")
    else:
        token_ids = np.asarray(texts, dtype="int32")
    parts = [ops.convert_to_numpy(model.encode_text(token_ids[s])) for s in _batches(len(token_ids), batch_size)]
    return np.concatenate(parts).astype("float32")
