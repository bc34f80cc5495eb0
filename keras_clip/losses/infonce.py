"""Symmetric InfoNCE (the CLIP loss) and its decoupled variant (DCL)."""

import keras
from keras import ops

from keras_clip.losses._common import as_float32
from keras_clip.losses._common import as_scalar_float32
from keras_clip.losses._common import check_rank
from keras_clip.losses._common import check_same_batch
from keras_clip.losses._common import check_same_width
from keras_clip.losses._common import decoupled_cross_entropy
from keras_clip.losses._common import diagonal_cross_entropy
from keras_clip.losses._common import static_dim
from keras_clip.losses.base import ContrastiveLoss


def contrastive_logits(a, b, logit_scale):
    """Scaled similarity matrix `logit_scale * a @ b.T`, in float32.

    `a` and `b` are assumed already L2-normalised, so the matrix holds scaled
    cosine similarities; this function does not normalise. These are CLIP's
    logits (Radford et al. 2021, arXiv:2103.00020): row i scores image i
    against every text.

    Args:
        a: (Ba, D) embeddings (any float dtype; computed in float32).
        b: (Bb, D) embeddings.
        logit_scale: scalar, the inverse temperature `1 / tau` (already
            exponentiated, as returned by the CLIP model).

    Returns:
        (Ba, Bb) float32 logits, `logits[i, j] = s * <a_i, b_j>`.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> a = np.eye(3, dtype="float32")
    >>> logits = contrastive_logits(a, a, 10.0)
    >>> ops.convert_to_numpy(logits).tolist()
    [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]]
    """
    a = as_float32(a)
    b = as_float32(b)
    check_rank(a, 2, "a")
    check_rank(b, 2, "b")
    check_same_width(a, b, "a", "b")
    scale = as_scalar_float32(logit_scale, "logit_scale")
    return scale * ops.matmul(a, ops.transpose(b))  # (Ba, Bb)


def _check_decoupled_batch(batch):
    if batch is not None and batch < 2:
        raise ValueError(
            "The decoupled InfoNCE loss (DCL) removes the positive from the "
            "denominator, so every row needs at least one negative; received "
            f"a batch of {batch}. Use a batch size >= 2, or use the standard "
            "InfoNCE (decoupled=False), which is defined (and exactly 0) for "
            "a batch of 1."
        )


def infonce(image_embeddings, text_embeddings, logit_scale, decoupled=False):
    """Symmetric InfoNCE loss of CLIP (and the decoupled DCL variant).

    With `s = logit_scale` and `l_ij = s * <x_i, y_j>` (image i, text j):

        L_i2t = mean_i [ -l_ii + logsumexp_k l_ik ]   (CE over row i)
        L_t2i = mean_i [ -l_ii + logsumexp_k l_ki ]   (CE over column i)
        loss  = (L_i2t + L_t2i) / 2

    i.e. the mean of `CE(logits, arange(B))` and `CE(logits.T, arange(B))`.
    The denominator runs over the positive *and* all B-1 negatives; `s` is
    the inverse temperature `1 / tau` (tau = 0.05 gives s = 20). Each row is
    evaluated as `softplus(logsumexp_{k != i}(l_ik - l_ii))`, the same value
    written so that small losses stay accurate in float32.

    `decoupled=True` is the decoupled contrastive loss (DCL,
    Yeh et al. 2021, arXiv:2110.06848) that the tutorial's
    `masked_fill(pos_mask, 0)` implementation actually computes: the positive
    is removed from the denominator,

        loss_i = -l_ii + logsumexp_{k != i} l_ik,

    per direction, then the two directions are averaged. It can be negative.

    References: Oord et al. 2018 (arXiv:1807.03748, InfoNCE);
    Radford et al. 2021 (arXiv:2103.00020, CLIP).

    Batch of 1: with `decoupled=False` the loss is exactly 0 (the only logit is
    the positive, so there is no negative and no training signal). With
    `decoupled=True` the denominator would be empty: a `ValueError` is raised
    when the batch size is statically 1; if it is only known at run time and
    turns out to be 1, the result is about 1e9 (the masking constant), a loud
    "infinite" loss rather than NaN.

    Args:
        image_embeddings: (B, D) L2-normalised image embeddings (not
            normalised here). Any float dtype; computed in float32.
        text_embeddings: (B, D) L2-normalised text embeddings.
        logit_scale: scalar inverse temperature `1 / tau`, already exp'd.
        decoupled: bool, remove the positive from the denominator (DCL).

    Returns:
        scalar float32 mean loss.

    Example:

    >>> import numpy as np
    >>> e = np.eye(8, dtype="float32")  # perfectly aligned, orthonormal
    >>> print(f"{float(infonce(e, e, 10.0)):.4e}")  # log(1 + 7 e^-10)
    3.1775e-04
    >>> print(f"{float(infonce(e, e, 10.0, decoupled=True)):.4f}")  # log 7 - 10
    -8.0541
    """
    x = as_float32(image_embeddings)
    y = as_float32(text_embeddings)
    check_rank(x, 2, "image_embeddings")
    check_rank(y, 2, "text_embeddings")
    check_same_batch(x, y, "image_embeddings", "text_embeddings")
    check_same_width(x, y, "image_embeddings", "text_embeddings")
    logits = contrastive_logits(x, y, logit_scale)  # (B, B)
    if decoupled:
        _check_decoupled_batch(static_dim(x, 0))
        per_row = decoupled_cross_entropy
    else:
        per_row = diagonal_cross_entropy
    loss_i2t = ops.mean(per_row(logits))
    loss_t2i = ops.mean(per_row(ops.transpose(logits)))
    return 0.5 * (loss_i2t + loss_t2i)


@keras.saving.register_keras_serializable(package="keras_clip")
class InfoNCE(ContrastiveLoss):
    """Symmetric InfoNCE (CLIP) loss on the CLIP model's output dict.

    Uses `y_pred["image_embeddings"]`, `y_pred["text_embeddings"]` and
    `y_pred["logit_scale"]`; `y_true` is ignored. See `infonce` for the
    formula. Reference: CLIP, arXiv:2103.00020; DCL, arXiv:2110.06848.

    Args:
        decoupled: bool, use the decoupled variant (positive removed from the
            denominator). Defaults to False (standard cross-entropy).
        name: optional name.

    Example:

    >>> import numpy as np
    >>> e = np.eye(4, dtype="float32")
    >>> y_pred = {"image_embeddings": e, "text_embeddings": e,
    ...           "logit_scale": np.float32(1.0)}
    >>> print(f"{float(InfoNCE()(None, y_pred)):.4f}")
    0.7437
    """

    def __init__(self, decoupled=False, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.decoupled = bool(decoupled)

    def call(self, y_true, y_pred):
        return infonce(
            self._require(y_pred, "image_embeddings"),
            self._require(y_pred, "text_embeddings"),
            self._require(y_pred, "logit_scale"),
            decoupled=self.decoupled,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"decoupled": self.decoupled})
        return config
