"""The two inference abilities of a trained CLIP, on files:
rank texts for an image, and rank images for a text."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_clip.eval.embed import embed_images, embed_texts
from keras_clip.data.decode import decode_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _decode_file(path, image_size):
    """One image file -> `(H, W, 3)` float32, or a ValueError naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}.")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"Image file {path!r} is empty (0 bytes).")
    try:
        return decode_images(tf.constant([data], tf.string), image_size[:2]).numpy()[0]
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise ValueError(f"Image file {path!r} cannot be decoded ({reason}).") from None


def load_images(paths, image_size, skip_bad=False):
    """Image files -> `(N, H, W, 3)` float32 pixels, resized (shorter side) and
    centre-cropped as at evaluation and in the exported SavedModel.

    With `skip_bad`, files that cannot be read or decoded are left out:
    returns `(pixels, kept paths, [(path, reason), ...])`. Without it the
    first bad file raises a ValueError naming it.
    """
    pixels, kept, skipped = [], [], []
    for path in paths:
        try:
            pixels.append(_decode_file(path, image_size))
            kept.append(path)
        except (OSError, ValueError) as error:
            if not skip_bad:
                raise
            skipped.append((path, str(error)))
    array = np.stack(pixels) if pixels else np.zeros((0, *image_size[:2], 3), "float32")
    return (array, kept, skipped) if skip_bad else array


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


def rank_images(model, text, image_paths, skipped=None):
    """`[(path, probability), ...]` best first: softmax over the images (text-to-image retrieval).

    Files that cannot be decoded are left out of the ranking; pass a list as
    `skipped` to receive `(path, reason)` for each of them.
    """
    pixels, image_paths, bad = load_images(image_paths, model.image_shape, skip_bad=True)
    if skipped is not None:
        skipped.extend(bad)
    if not image_paths:
        raise ValueError(f"None of the {len(bad)} image files could be read: " + "; ".join(r for _, r in bad[:3]))
    images = embed_images(model, pixels)  # (N, D)
    query = embed_texts(model, [text])  # (1, D)
    probs = _softmax(float(keras.ops.convert_to_numpy(model.logit_scale())) * (query @ images.T)[0])
    order = np.argsort(-probs, kind="stable")
    return [(image_paths[i], float(probs[i])) for i in order]
