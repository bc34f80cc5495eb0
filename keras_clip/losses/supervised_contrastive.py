"""Supervised contrastive losses: label-aware positives (SupCon, L_out)."""

import keras
from keras import ops

from keras_clip.losses._common import NEG_INF
from keras_clip.losses._common import as_float32
from keras_clip.losses._common import as_scalar_float32
from keras_clip.losses._common import check_rank
from keras_clip.losses._common import check_same_batch
from keras_clip.losses._common import check_same_width
from keras_clip.losses._common import dim
from keras_clip.losses._common import eye_mask
from keras_clip.losses._common import mean_over_positives
from keras_clip.losses.base import ContrastiveLoss
from keras_clip.losses.infonce import contrastive_logits


def _labels_vector(labels, batch_source, name="labels"):
    labels = ops.cast(labels, "int32")
    if len(labels.shape) == 2 and labels.shape[1] == 1:
        labels = ops.reshape(labels, (-1,))
    if len(labels.shape) != 1:
        raise ValueError(
            f"`{name}` must be a (B,) integer vector, but it has shape "
            f"{tuple(labels.shape)}."
        )
    check_same_batch(labels, batch_source, name, "the embeddings")
    return labels


def same_class_mask(labels):
    """(B, B) bool: `labels_i == labels_j` and both labels are >= 0."""
    has_class = labels >= 0  # (B,)
    same = ops.equal(
        ops.expand_dims(labels, 1), ops.expand_dims(labels, 0)
    )  # (B, B)
    both = ops.logical_and(
        ops.expand_dims(has_class, 1), ops.expand_dims(has_class, 0)
    )
    return ops.logical_and(same, both)


def supervised_contrastive(
    image_embeddings, text_embeddings, logit_scale, labels
):
    """Cross-modal supervised contrastive loss (SupCon L_out, image <-> text).

    CLIP with label-aware positives: image i and text j form a positive when
    they share a class, so a row can have several positives. With
    `l_ij = s * <x_i, y_j>` and the positive set

        P(i) = { j : labels_i == labels_j >= 0 }  U  { i },

    (a negative label means "no class": only the diagonal pair is positive
    for that row / column), each direction is the L_out form of SupCon

        L_i2t = mean_i [ -1/|P(i)| * sum_{j in P(i)} log_softmax_j(l_i.) ]
        L_t2i = same on the transposed logits,
        loss  = (L_i2t + L_t2i) / 2.

    The denominator of the softmax runs over all B entries of the row.
    With all labels distinct (or all negative) this equals `infonce`.
    A row whose positive set is empty (impossible here since the diagonal is
    always positive, but guarded anyway) contributes nothing and is left out
    of the mean, so no NaN can appear.

    Reference: Khosla et al. 2020, "Supervised Contrastive Learning",
    arXiv:2004.11362 (L_out, eq. 2).

    Args:
        image_embeddings: (B, D) L2-normalised image embeddings.
        text_embeddings: (B, D) L2-normalised text embeddings.
        logit_scale: scalar inverse temperature (already exp'd).
        labels: (B,) int class labels; < 0 means no class.

    Returns:
        scalar float32 mean loss.

    Example:

    >>> import numpy as np
    >>> e = np.eye(4, dtype="float32")
    >>> labels = np.array([0, 0, 1, -1])
    >>> loss = supervised_contrastive(e, e, 1.0, labels)
    >>> print(f"{float(loss):.4f}")
    0.9937
    """
    x = as_float32(image_embeddings)
    y = as_float32(text_embeddings)
    check_rank(x, 2, "image_embeddings")
    check_rank(y, 2, "text_embeddings")
    check_same_batch(x, y, "image_embeddings", "text_embeddings")
    check_same_width(x, y, "image_embeddings", "text_embeddings")
    labels = _labels_vector(labels, x)
    logits = contrastive_logits(x, y, logit_scale)  # (B, B)
    positives = ops.logical_or(
        same_class_mask(labels), eye_mask(dim(x, 0))
    )  # (B, B), symmetric
    loss_i2t = mean_over_positives(
        ops.log_softmax(logits, axis=1), positives
    )
    loss_t2i = mean_over_positives(
        ops.log_softmax(ops.transpose(logits), axis=1),
        ops.transpose(positives),
    )
    return 0.5 * (loss_i2t + loss_t2i)


def supcon(features, labels, temperature=0.1):
    """Single-modality supervised contrastive loss (SupCon L_out).

    `features` is an (N, D) batch of L2-normalised features (typically two
    augmented views of B samples concatenated, N = 2B, with the labels
    repeated). With `l_ij = <f_i, f_j> / tau`, the anchor itself is removed
    from its own row (self-contrast excluded from the denominator), and the
    positives are the *other* samples with the same label:

        A(i) = { k != i },  P(i) = { p in A(i) : labels_p == labels_i >= 0 }
        loss = mean_i [ -1/|P(i)| * sum_{p in P(i)}
                        ( l_ip - logsumexp_{k in A(i)} l_ik ) ]

    Anchors with no positive (a singleton class, or a negative label, which
    means "no class") contribute nothing and are left out of the mean; if no
    anchor has a positive the loss is 0. No NaN either way.

    With labels = concat(arange(B), arange(B)) this is SimCLR's NT-Xent.

    Reference: Khosla et al. 2020, arXiv:2004.11362 (eq. 2, L_out).

    Args:
        features: (N, D) L2-normalised features (not normalised here).
        labels: (N,) int labels; < 0 means no class.
        temperature: float `tau` (> 0).

    Returns:
        scalar float32 mean loss.

    Example:

    >>> import numpy as np
    >>> f = np.repeat(np.eye(2, dtype="float32"), 3, axis=0)  # 2 clusters of 3
    >>> loss = supcon(f, np.array([0, 0, 0, 1, 1, 1]), temperature=0.5)
    >>> print(f"{float(loss):.4f}")  # log(2 + 3 e^-2)
    0.8780
    """
    f = as_float32(features)
    check_rank(f, 2, "features")
    labels = _labels_vector(labels, f)
    tau = as_scalar_float32(temperature, "temperature")
    logits = ops.matmul(f, ops.transpose(f)) / tau  # (N, N)
    self_mask = eye_mask(dim(f, 0))  # (N, N)
    logits = ops.where(self_mask, NEG_INF, logits)  # anchor not in its row
    positives = ops.logical_and(
        same_class_mask(labels), ops.logical_not(self_mask)
    )
    return mean_over_positives(ops.log_softmax(logits, axis=1), positives)


@keras.saving.register_keras_serializable(package="keras_clip")
class SupervisedContrastive(ContrastiveLoss):
    """Cross-modal supervised contrastive loss on the CLIP output dict.

    Uses `y_true` as the (B,) int labels (negative = no class) and
    `y_pred["image_embeddings"]`, `y_pred["text_embeddings"]`,
    `y_pred["logit_scale"]`. See `supervised_contrastive` for the formula.
    Reference: SupCon, arXiv:2004.11362.

    Example:

    >>> import numpy as np
    >>> e = np.eye(4, dtype="float32")
    >>> y_pred = {"image_embeddings": e, "text_embeddings": e,
    ...           "logit_scale": 1.0}
    >>> loss = SupervisedContrastive()(np.array([0, 0, 1, -1]), y_pred)
    >>> print(f"{float(loss):.4f}")
    0.9937
    """

    needs_labels = True

    def call(self, y_true, y_pred):
        if y_true is None:
            raise ValueError(
                "SupervisedContrastive needs class labels as y_true, but "
                "received y_true=None. Pass a (B,) int 'labels' entry in the "
                "inputs dict (negative = no class), e.g. "
                "{'images': ..., 'token_ids': ..., 'labels': ...}, or use "
                "InfoNCE when there are no labels."
            )
        return supervised_contrastive(
            self._require(y_pred, "image_embeddings"),
            self._require(y_pred, "text_embeddings"),
            self._require(y_pred, "logit_scale"),
            y_true,
        )
