"""`ContrastiveLoss`: the base class of every `keras_clip` loss wrapper."""

import collections.abc

import keras
from keras import ops
from keras import backend

# What each model output key is and how to get it; used in error messages.
_KEY_HINTS = {
    "image_embeddings": (
        "the model must return the L2-normalised (B, D) image embeddings "
        "under 'image_embeddings'"
    ),
    "text_embeddings": (
        "the model must return the L2-normalised (B, D) text embeddings "
        "under 'text_embeddings'"
    ),
    "logit_scale": (
        "the model must return its (already exponentiated) logit scale under "
        "'logit_scale'"
    ),
    "logit_bias": (
        "the model was built without a logit bias; build "
        "CLIP(..., logit_bias_init=-10.0)"
    ),
    "image_tokens": (
        "the model must return per-token image features under "
        "'image_tokens' (B, Ni, D) for token-level (FILIP) contrast; build "
        "the CLIP model with token outputs enabled"
    ),
    "text_tokens": (
        "the model must return per-token text features under 'text_tokens' "
        "(B, Nt, D) for token-level (FILIP) contrast; build the CLIP model "
        "with token outputs enabled"
    ),
    "image_views": (
        "the model must also embed a second augmented view of each image and "
        "return it under 'image_views' (B, D); feed a second view or drop "
        "this loss"
    ),
    "queue": (
        "the model / training step must provide the negative queue (K, D) "
        "under 'queue'"
    ),
    "image_queue": "build the CLIP model with a queue (config model.queue_size: 512, say)",
    "text_queue": "build the CLIP model with a queue (config model.queue_size: 512, say)",
    "image_keys": "build the CLIP model with momentum key towers (config model.momentum: 0.999)",
    "text_keys": "build the CLIP model with momentum key towers (config model.momentum: 0.999)",
}


def _is_floating(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    try:
        return "float" in backend.standardize_dtype(dtype)
    except (ValueError, TypeError):
        return False


class ContrastiveLoss(keras.losses.Loss):
    """Base class for losses over the CLIP model's output dict.

    Unlike a standard `keras.losses.Loss`, the prediction is a *dict* (the
    CLIP model's output) and the target is either the (B,) int labels tensor
    or None. The standard `Loss.__call__` (which converts `y_true` to a tensor
    and reduces per-sample values) is replaced:

    `__call__(y_true, y_pred, sample_weight=None)` casts every floating
    tensor in `y_pred` to float32 (so mixed-precision outputs are handled in
    full precision), then returns `self.call(y_true, y_pred)`, a scalar
    float32. Subclasses implement `call` and use `self._require(y_pred, key)`
    to fetch a key with a helpful error if it is missing.

    Class attributes `needs_tokens`, `needs_labels` and `needs_image_views`
    tell the model what the loss reads beyond the global embeddings.

    Expected `y_pred` keys (each subclass uses a subset):
    `image_embeddings` (B, D), `text_embeddings` (B, D) (L2-normalised),
    `logit_scale` (scalar, exp'd), `logit_bias` (scalar), `image_tokens`
    (B, Ni, D), `text_tokens` (B, Nt, D), `text_token_mask` (B, Nt),
    `image_token_mask` (B, Ni), `image_views` (B, D).

    `sample_weight` is not supported: a contrastive loss couples all samples
    of the batch, so there is no per-sample value to weight. Passing one
    raises a `ValueError` rather than being silently ignored.

    Example (a custom loss):

    >>> from keras import ops
    >>> class MeanCosine(ContrastiveLoss):
    ...     def call(self, y_true, y_pred):
    ...         x = self._require(y_pred, "image_embeddings")
    ...         y = self._require(y_pred, "text_embeddings")
    ...         return -ops.mean(ops.sum(x * y, axis=-1))
    >>> import numpy as np
    >>> e = np.eye(2, dtype="float16")
    >>> loss = MeanCosine()(None, {"image_embeddings": e,
    ...                             "text_embeddings": e})
    >>> print(float(loss))
    -1.0
    """

    # What the loss reads besides the embeddings; the model uses these to
    # decide what to compute (e.g. `needs_tokens` turns on token outputs).
    needs_tokens = False
    needs_labels = False
    needs_image_views = False

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name, **kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} does not support `sample_weight`: a "
                "contrastive loss couples every sample of the batch, so "
                "there is no per-sample loss to weight. Received "
                f"sample_weight={sample_weight!r}; drop it (or filter the "
                "batch instead)."
            )
        if not isinstance(y_pred, collections.abc.Mapping):
            raise ValueError(
                f"{type(self).__name__} expects `y_pred` to be the CLIP "
                "model's output dict (with keys such as 'image_embeddings', "
                "'text_embeddings', 'logit_scale'); received an object of "
                f"type {type(y_pred).__name__}."
            )
        with keras.name_scope(self.name):
            y_pred = {
                key: (ops.cast(value, "float32") if _is_floating(value)
                      else value)
                for key, value in y_pred.items()
            }
            loss = self.call(y_true, y_pred)
            return ops.cast(loss, "float32")

    def call(self, y_true, y_pred):
        raise NotImplementedError(
            f"{type(self).__name__} must implement call(y_true, y_pred)."
        )

    def _require(self, y_pred, key):
        """Returns `y_pred[key]` or raises a ValueError naming key and fix."""
        value = y_pred.get(key)
        if value is None:
            hint = _KEY_HINTS.get(key, f"the model must return '{key}'")
            raise ValueError(
                f"{type(self).__name__} needs y_pred['{key}'], but the model "
                f"output has no '{key}' (keys received: "
                f"{sorted(y_pred.keys())}): {hint}."
            )
        return value
