"""The two inference abilities of a trained CLIP, on files:
rank texts for an image, and rank images for a text."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.export.image_bytes import decode_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def load_images(paths, image_size):
    """Image files -> `(N, H, W, 3)` float32 pixels, resized (shorter side) and
    centre-cropped as at evaluation and in the exported SavedModel."""
    blobs = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Image file not found: {path!r}.")
        with open(path, "rb") as f:
            blobs.append(f.read())
    return decode_images(tf.constant(blobs, tf.string), image_size[:2]).numpy()


def list_images(directory):
    """Image files in a folder, sorted (clear error when there are none)."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Image folder not found: {directory!r}.")
    paths = sorted(
        os.path.join(directory, f) for f in os.listdir(directory) if f.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {directory!r}.")
    return paths


def _softmax(logits):
    logits = logits - logits.max()
    p = np.exp(logits)
    return p / p.sum()


def rank_texts(model, image_path, texts):
    """`[(text, probability), ...]` best first: softmax over the texts of
    `logit_scale * cos(image, text)` (zero-shot classification of one image)."""
    if not texts:
        raise ValueError("rank_texts needs at least one text; received none.")
    image = embed_images(model, load_images([image_path], model.image_shape))  # (1, D)
    text = embed_texts(model, list(texts))  # (T, D)
    probs = _softmax(float(keras.ops.convert_to_numpy(model.logit_scale())) * (image @ text.T)[0])
    order = np.argsort(-probs, kind="stable")
    return [(texts[i], float(probs[i])) for i in order]


def rank_images(model, text, image_paths):
    """`[(path, probability), ...]` best first: softmax over the images (text-to-image retrieval)."""
    images = embed_images(model, load_images(image_paths, model.image_shape))  # (N, D)
    query = embed_texts(model, [text])  # (1, D)
    probs = _softmax(float(keras.ops.convert_to_numpy(model.logit_scale())) * (query @ images.T)[0])
    order = np.argsort(-probs, kind="stable")
    return [(image_paths[i], float(probs[i])) for i in order]
