"""SimCLR's NT-Xent loss (intra-modal contrast between two augmented views)."""

import keras
from keras import ops

from keras_clip.losses._common import NEG_INF
from keras_clip.losses._common import as_float32
from keras_clip.losses._common import as_scalar_float32
from keras_clip.losses._common import check_rank
from keras_clip.losses._common import check_same_batch
from keras_clip.losses._common import check_same_width
from keras_clip.losses._common import dim
from keras_clip.losses._common import positive_cross_entropy
from keras_clip.losses.base import ContrastiveLoss


def nt_xent(view1, view2, temperature=0.1):
    """NT-Xent (normalised temperature-scaled cross-entropy) of SimCLR.

    The 2B samples `z = concat(view1, view2)` are contrasted against each
    other. With `l_ij = <z_i, z_j> / tau`, the positive of sample i is the
    other view of the same image, `pos(i) = (i + B) mod 2B`, and the
    denominator runs over the 2B - 1 samples other than i (self excluded):

        loss = mean_{i < 2B} [ -l_{i,pos(i)} + logsumexp_{k != i} l_ik ]

    Batch of 1: the only other sample is the positive, so the loss is exactly
    0 (no negatives, no signal).

    Reference: Chen et al. 2020, "A Simple Framework for Contrastive Learning
    of Visual Representations", arXiv:2002.05709.

    Args:
        view1: (B, D) L2-normalised embeddings of the first view.
        view2: (B, D) L2-normalised embeddings of the second view.
        temperature: float `tau` (> 0).

    Returns:
        scalar float32 mean loss over the 2B anchors.

    Example:

    >>> import numpy as np
    >>> e = np.eye(4, dtype="float32")  # perfect views
    >>> print(f"{float(nt_xent(e, e, temperature=0.5)):.4f}")  # log(1+6e^-2)
    0.5944
    """
    v1 = as_float32(view1)
    v2 = as_float32(view2)
    check_rank(v1, 2, "view1")
    check_rank(v2, 2, "view2")
    check_same_batch(v1, v2, "view1", "view2")
    check_same_width(v1, v2, "view1", "view2")
    tau = as_scalar_float32(temperature, "temperature")
    z = ops.concatenate([v1, v2], axis=0)  # (2B, D)
    n2 = dim(z, 0)
    logits = ops.matmul(z, ops.transpose(z)) / tau  # (2B, 2B)
    idx = ops.arange(n2)
    partner = ops.concatenate(
        [ops.arange(dim(v1, 0)) + dim(v1, 0), ops.arange(dim(v1, 0))], axis=0
    )  # (2B,) index of the other view
    is_self = ops.equal(idx[:, None], idx[None, :])  # (2B, 2B)
    is_partner = ops.equal(partner[:, None], idx[None, :])  # (2B, 2B)
    positive = ops.sum(v1 * v2, axis=1) / tau  # (B,)
    positive = ops.concatenate([positive, positive], axis=0)  # (2B,)
    # Negatives: every sample except the anchor itself and its partner.
    negatives = ops.where(
        ops.logical_or(is_self, is_partner), NEG_INF, logits
    )  # (2B, 2B)
    per_anchor = positive_cross_entropy(
        negatives - ops.expand_dims(positive, 1)
    )  # (2B,)
    return ops.mean(per_anchor)


@keras.saving.register_keras_serializable(package="keras_clip")
class NTXent(ContrastiveLoss):
    """SimCLR NT-Xent loss on the CLIP output dict (image view vs image view).

    Uses `y_pred["image_embeddings"]` as the first view and
    `y_pred["image_views"]` (the embedding of a second augmented view of the
    same images) as the second; `y_true` is ignored. See `nt_xent`.
    Reference: SimCLR, arXiv:2002.05709.

    Args:
        temperature: float `tau`, fixed (not the model's learnt scale).
            Defaults to 0.1.
        name: optional name.

    Example:

    >>> import numpy as np
    >>> e = np.eye(4, dtype="float32")
    >>> y_pred = {"image_embeddings": e, "image_views": e}
    >>> print(f"{float(NTXent(temperature=0.5)(None, y_pred)):.4f}")
    0.5944
    """

    needs_image_views = True

    def __init__(self, temperature=0.1, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        return nt_xent(
            self._require(y_pred, "image_embeddings"),
            self._require(y_pred, "image_views"),
            temperature=self.temperature,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature})
        return config
