"""SigLIP: pairwise sigmoid loss for language-image pre-training."""

import keras
from keras import ops

from keras_clip.losses._common import as_float32
from keras_clip.losses._common import as_scalar_float32
from keras_clip.losses._common import check_rank
from keras_clip.losses._common import check_same_batch
from keras_clip.losses._common import check_same_width
from keras_clip.losses._common import dim
from keras_clip.losses._common import eye_mask
from keras_clip.losses.base import ContrastiveLoss
from keras_clip.losses.infonce import contrastive_logits


def siglip(image_embeddings, text_embeddings, logit_scale, logit_bias):
    """SigLIP pairwise sigmoid loss.

    Every (image i, text j) pair is an independent binary problem:
    `z_ij = +1` for the matched pair (i == j), `-1` otherwise, and

        loss = -(1/B) * sum_{i,j} log_sigmoid( z_ij * (t * <x_i, y_j> + b) )

    with `t = logit_scale` (already exponentiated) and `b = logit_bias`
    (SigLIP initialises t = 10, b = -10). Computed with a stable
    `log_sigmoid`. Batch of 1: only the positive term remains,
    `softplus(-(t * <x, y> + b))`.

    Reference: Zhai et al. 2023, "Sigmoid Loss for Language Image
    Pre-Training", arXiv:2303.15343.

    Args:
        image_embeddings: (B, D) L2-normalised image embeddings.
        text_embeddings: (B, D) L2-normalised text embeddings.
        logit_scale: scalar `t` (already exp'd).
        logit_bias: scalar `b`.

    Returns:
        scalar float32 loss (sum over pairs divided by B).

    Example:

    >>> import numpy as np
    >>> e = np.ones((4, 1), dtype="float32")  # x.y = 1 everywhere
    >>> print(f"{float(siglip(e, e, 10.0, -10.0)):.4f}")  # 4 log 2
    2.7726
    """
    x = as_float32(image_embeddings)
    y = as_float32(text_embeddings)
    check_rank(x, 2, "image_embeddings")
    check_rank(y, 2, "text_embeddings")
    check_same_batch(x, y, "image_embeddings", "text_embeddings")
    check_same_width(x, y, "image_embeddings", "text_embeddings")
    bias = as_scalar_float32(logit_bias, "logit_bias")
    logits = contrastive_logits(x, y, logit_scale) + bias  # (B, B)
    signs = ops.where(eye_mask(dim(x, 0)), 1.0, -1.0)  # (B, B)
    total = -ops.sum(ops.log_sigmoid(signs * logits))
    return total / ops.cast(dim(x, 0), "float32")


@keras.saving.register_keras_serializable(package="keras_clip")
class SigLIP(ContrastiveLoss):
    """SigLIP sigmoid loss on the CLIP output dict.

    Uses `y_pred["image_embeddings"]`, `y_pred["text_embeddings"]`,
    `y_pred["logit_scale"]` and `y_pred["logit_bias"]` (a model built with
    `CLIP(..., logit_bias_init=-10.0)`); `y_true` is ignored. See `siglip`.
    Reference: arXiv:2303.15343.

    Example:

    >>> import numpy as np
    >>> e = np.ones((4, 1), dtype="float32")
    >>> y_pred = {"image_embeddings": e, "text_embeddings": e,
    ...           "logit_scale": 10.0, "logit_bias": -10.0}
    >>> print(f"{float(SigLIP()(None, y_pred)):.4f}")
    2.7726
    """

    def call(self, y_true, y_pred):
        return siglip(
            self._require(y_pred, "image_embeddings"),
            self._require(y_pred, "text_embeddings"),
            self._require(y_pred, "logit_scale"),
            self._require(y_pred, "logit_bias"),
        )
