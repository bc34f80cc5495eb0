"""MoCo-style InfoNCE against a queue (dictionary) of negative keys."""

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
from keras_clip.losses._common import positive_cross_entropy
from keras_clip.losses._common import to_bool_mask
from keras_clip.losses.base import ContrastiveLoss

MOCO_TEMPERATURE = 0.07


def queue_infonce(
    queries,
    keys,
    queue,
    queue_valid=None,
    logit_scale=1.0 / MOCO_TEMPERATURE,
    include_batch_negatives=False,
):
    """(K+1)-way InfoNCE of MoCo: one positive key against a queue.

    For query `q_i` with positive key `k_i` and queue entries `n_1..n_K`
    (`s = logit_scale = 1 / tau`):

        logits_i = [ s <q_i, k_i>,  s <q_i, n_1>, ..., s <q_i, n_K> ]
        loss     = mean_i CE(logits_i, label 0)
                 = mean_i [ -s <q_i, k_i> + logsumexp(logits_i) ]

    Queue slots with `queue_valid == False` (not filled yet) are masked out
    with `where(..., -1e9)`, so whatever they hold has no effect at all on
    the value or the gradient. With `include_batch_negatives=True` the other
    keys of the batch, `k_j` (j != i), are appended as extra negatives.
    Keys and queue are constants (`stop_gradient`): only the queries get a
    gradient, as in MoCo where keys come from a momentum encoder.

    Reference: He et al. 2019, "Momentum Contrast for Unsupervised Visual
    Representation Learning", arXiv:1911.05722 (eq. 1).

    Args:
        queries: (B, D) L2-normalised queries.
        keys: (B, D) L2-normalised positive keys (row i matches query i).
        queue: (K, D) L2-normalised negative keys (K may be 0).
        queue_valid: optional (K,) bool or 0/1 mask of filled slots
            (None = all filled).
        logit_scale: scalar `1 / tau`. Defaults to 1 / 0.07 (MoCo).
        include_batch_negatives: bool, also use the other keys of the batch
            as negatives.

    Returns:
        scalar float32 mean loss over the queries.

    Example:

    >>> import numpy as np
    >>> q = np.eye(4, dtype="float32")[:2]          # 2 queries
    >>> queue = np.eye(4, dtype="float32")[2:]      # 2 orthogonal negatives
    >>> loss = queue_infonce(q, q, queue, logit_scale=2.0)
    >>> print(f"{float(loss):.4f}")  # log(1 + 2 e^-2)
    0.2395
    """
    q = as_float32(queries)
    k = ops.stop_gradient(as_float32(keys))
    queue = ops.stop_gradient(as_float32(queue))
    check_rank(q, 2, "queries")
    check_rank(k, 2, "keys")
    check_rank(queue, 2, "queue")
    check_same_batch(q, k, "queries", "keys")
    check_same_width(q, k, "queries", "keys")
    check_same_width(q, queue, "queries", "queue")
    scale = as_scalar_float32(logit_scale, "logit_scale")

    positive = scale * ops.sum(q * k, axis=1)  # (B,)
    negatives = scale * ops.matmul(q, ops.transpose(queue))  # (B, K)
    if queue_valid is not None:
        valid = to_bool_mask(queue_valid)  # (K,)
        if len(valid.shape) != 1:
            raise ValueError(
                "`queue_valid` must be a (K,) mask of filled queue slots, "
                f"but it has shape {tuple(valid.shape)}."
            )
        negatives = ops.where(ops.expand_dims(valid, 0), negatives, NEG_INF)
    columns = [negatives]
    if include_batch_negatives:
        batch_logits = scale * ops.matmul(q, ops.transpose(k))  # (B, B)
        batch_logits = ops.where(eye_mask(dim(q, 0)), NEG_INF, batch_logits)
        columns.append(batch_logits)
    # One always-masked column keeps the log-sum-exp finite (and the loss
    # exactly 0) when there is no negative at all (K = 0).
    columns.append(ops.full_like(positive[:, None], NEG_INF))
    negatives = ops.concatenate(columns, axis=1)  # (B, K [+ B] + 1)
    per_query = positive_cross_entropy(
        negatives - ops.expand_dims(positive, 1)
    )  # (B,)
    return ops.mean(per_query)


@keras.saving.register_keras_serializable(package="keras_clip")
class QueueInfoNCE(ContrastiveLoss):
    """MoCo-style queue InfoNCE on the CLIP output dict.

    Uses `y_pred[query_key]` as queries, `y_pred[key_key]` as positive keys,
    `y_pred[queue_key]` (K, D) as negatives, `y_pred[queue_valid_key]`
    (optional (K,) mask) and `y_pred["logit_scale"]`; `y_true` is ignored.
    The queue itself (and its update) belongs to the model / training step.
    See `queue_infonce`. Reference: MoCo, arXiv:1911.05722.

    Args:
        include_batch_negatives: bool, also contrast against the other keys
            of the batch. Defaults to False.
        query_key: y_pred key of the queries. Defaults to "image_embeddings".
        key_key: y_pred key of the positive keys. Defaults to
            "text_embeddings".
        queue_key: y_pred key of the queue. Defaults to "queue".
        queue_valid_key: y_pred key of the filled-slot mask. Defaults to
            "queue_valid".
        name: optional name.

    Example:

    >>> import numpy as np
    >>> e = np.eye(4, dtype="float32")
    >>> y_pred = {"image_embeddings": e[:2], "text_embeddings": e[:2],
    ...           "queue": e[2:], "logit_scale": 2.0}
    >>> print(f"{float(QueueInfoNCE()(None, y_pred)):.4f}")
    0.2395
    """

    def __init__(
        self,
        include_batch_negatives=False,
        query_key="image_embeddings",
        key_key="text_embeddings",
        queue_key="queue",
        queue_valid_key="queue_valid",
        name=None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.include_batch_negatives = bool(include_batch_negatives)
        self.query_key = query_key
        self.key_key = key_key
        self.queue_key = queue_key
        self.queue_valid_key = queue_valid_key

    def call(self, y_true, y_pred):
        return queue_infonce(
            self._require(y_pred, self.query_key),
            self._require(y_pred, self.key_key),
            self._require(y_pred, self.queue_key),
            queue_valid=y_pred.get(self.queue_valid_key),
            logit_scale=self._require(y_pred, "logit_scale"),
            include_batch_negatives=self.include_batch_negatives,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "include_batch_negatives": self.include_batch_negatives,
                "query_key": self.query_key,
                "key_key": self.key_key,
                "queue_key": self.queue_key,
                "queue_valid_key": self.queue_valid_key,
            }
        )
        return config
