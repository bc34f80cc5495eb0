"""Blockwise InfoNCE and SigLIP: the (B, B) logit matrix is never stored.

The dense objectives (`infonce`, `siglip`) build all B x B logits, which at
B = 65,536 is 16 GiB in float32, and autodiff keeps several such matrices
for the backward pass. Here the image rows are processed in strips of
`block_size` rows: a strip's logits `(block_size, B)` are computed, reduced
and dropped. InfoNCE needs a log-sum-exp per row (local to the strip) and
per column (a streaming log-sum-exp carried across strips: running maximum
and running sum of exponentials). The gradient is written by hand
(`keras.ops.custom_gradient`, which works on TensorFlow, JAX and PyTorch)
and recomputes each strip in the backward pass, so the peak extra memory is
O(block_size * B + B * D) instead of O(B^2).

Gradients (with `G = dL/dl`, `l_ij = s * c_ij`, `c_ij = <x_i, y_j>`):
`dL/dx_i = s sum_j G_ij y_j`, `dL/dy_j = s sum_i G_ij x_i`,
`dL/ds = sum_ij G_ij c_ij`, and for SigLIP `dL/db = sum_ij G_ij`, where

- InfoNCE: `G_ij = (P_ij + Q_ij) / (2B) - delta_ij / B`, `P` the row
  softmax and `Q` the column softmax of the logits;
- SigLIP: `G_ij = -z_ij sigmoid(-z_ij l_ij) / B`.

Everything is float32 (inputs of any float dtype are cast first). The loop
is `keras.ops.fori_loop` (lax.fori_loop / a Python loop), on TensorFlow a
`tf.while_loop` with one iteration at a time
(`keras_clip.utils.backend.sequential_fori_loop`: with 10 in flight, B=65,536
grew the process past 4.8 GB), so
one compiled strip serves any B, including a batch size only known at run
time (TensorFlow); the last strip is zero-padded and masked when
`block_size` does not divide B.
"""

import keras
from keras import ops

from keras_clip.losses._common import NEG_INF
from keras_clip.losses._common import as_float32
from keras_clip.losses._common import as_scalar_float32
from keras_clip.losses._common import check_rank
from keras_clip.losses._common import check_same_batch
from keras_clip.losses._common import check_same_width
from keras_clip.losses._common import dim
from keras_clip.losses.base import ContrastiveLoss
from keras_clip.utils.backend import sequential_fori_loop

DEFAULT_BLOCK_SIZE = 256


def _check_block_size(block_size):
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(
            f"block_size must be a positive int (rows per strip of logits, "
            f"e.g. 256); received block_size={block_size!r}."
        )
    return block_size


def _prepare(image_embeddings, text_embeddings):
    x = as_float32(image_embeddings)
    y = as_float32(text_embeddings)
    check_rank(x, 2, "image_embeddings")
    check_rank(y, 2, "text_embeddings")
    check_same_batch(x, y, "image_embeddings", "text_embeddings")
    check_same_width(x, y, "image_embeddings", "text_embeddings")
    return x, y


class _Strips:
    """Padding, masks and slicing for `n` strips of `bs` rows over B rows."""

    def __init__(self, x, block_size):
        self.bs = block_size
        self.batch = dim(x, 0)  # int, or a scalar tensor (dynamic batch)
        self.width = x.shape[-1]
        self.n = (self.batch + block_size - 1) // block_size
        self.padded = self.n * block_size
        self.batch_f = ops.cast(self.batch, "float32")

    def pad(self, x):  # (B, D) -> (Bp, D), zero rows appended
        extra = self.padded - self.batch
        return ops.concatenate([x, ops.zeros((extra, self.width), x.dtype)], axis=0)

    def rows(self, x, i):  # strip i of a padded (Bp, D) tensor
        return ops.slice(x, (i * self.bs, 0), (self.bs, self.width))

    def row_ids(self, i):  # (bs,) global row indices of strip i
        return i * self.bs + ops.arange(self.bs, dtype="int32")

    def column_valid(self):  # (Bp,) True for real (not padding) columns
        return ops.arange(self.padded, dtype="int32") < self.batch


# ------------------------------------------------------------------ InfoNCE
def _infonce_forward(x, y, s, block_size):
    """Returns (loss, q) where q_j = logsumexp_i(l_ij) - l_jj, shape (Bp,)."""
    st = _Strips(x, block_size)
    xp, yp = st.pad(x), st.pad(y)  # (Bp, D)
    diag = s * ops.sum(xp * yp, axis=1)  # (Bp,) l_jj
    col_ok = st.column_valid()  # (Bp,)
    cols = ops.arange(st.padded, dtype="int32")

    def body(i, carry):
        row_sum, col_max, col_sum = carry
        xb = st.rows(xp, i)  # (bs, D)
        logits = s * ops.matmul(xb, ops.transpose(yp))  # (bs, Bp)
        rows = st.row_ids(i)  # (bs,)
        row_ok = rows < st.batch
        # Negatives only (the positive's margin is exactly 0); softplus of
        # their log-sum-exp adds it back: small losses stay accurate.
        negative = ops.not_equal(rows[:, None], cols[None, :])  # (bs, Bp)
        d_rows = ops.slice(diag, (i * st.bs,), (st.bs,))  # (bs,)
        a = ops.where(
            ops.logical_and(negative, col_ok[None, :]),
            logits - d_rows[:, None],
            NEG_INF,
        )
        row_sum = row_sum + ops.sum(
            ops.where(row_ok, ops.softplus(ops.logsumexp(a, axis=1)), 0.0)
        )
        b = ops.where(
            ops.logical_and(negative, row_ok[:, None]),
            logits - diag[None, :],
            NEG_INF,
        )  # (bs, Bp)
        new_max = ops.maximum(col_max, ops.max(b, axis=0))  # (Bp,)
        col_sum = col_sum * ops.exp(col_max - new_max) + ops.sum(
            ops.exp(b - new_max[None, :]), axis=0
        )
        return row_sum, new_max, col_sum

    init = (
        ops.zeros((), "float32"),
        ops.full((st.padded,), NEG_INF, "float32"),
        ops.zeros((st.padded,), "float32"),
    )
    row_sum, col_max, col_sum = sequential_fori_loop(st.n, body, init)
    # Column j: softplus(logsumexp_{i != j}(l_ij - l_jj)) = lse_i l_ij - l_jj.
    q = ops.softplus(col_max + ops.log(col_sum))  # (Bp,)
    col_total = ops.sum(ops.where(col_ok, q, 0.0))
    loss = 0.5 * (row_sum + col_total) / st.batch_f
    return loss, q


def _infonce_backward(x, y, s, q, block_size):
    """dL/dx, dL/dy, dL/ds for the loss of `_infonce_forward` (upstream 1)."""
    st = _Strips(x, block_size)
    xp, yp = st.pad(x), st.pad(y)
    diag = s * ops.sum(xp * yp, axis=1)  # (Bp,)
    col_ok = st.column_valid()
    cols = ops.arange(st.padded, dtype="int32")
    half_over_b = 0.5 / st.batch_f

    def body(i, carry):
        dx, dy, ds = carry
        xb = st.rows(xp, i)  # (bs, D)
        cos = ops.matmul(xb, ops.transpose(yp))  # (bs, Bp)
        logits = s * cos
        row_ok = st.row_ids(i) < st.batch  # (bs,)
        ok = ops.logical_and(row_ok[:, None], col_ok[None, :])  # (bs, Bp)
        d_rows = ops.slice(diag, (i * st.bs,), (st.bs,))
        negative = ops.not_equal(st.row_ids(i)[:, None], cols[None, :])
        a = ops.where(ok, logits - d_rows[:, None], NEG_INF)  # (bs, Bp)
        r = ops.softplus(ops.logsumexp(
            ops.where(negative, a, NEG_INF), axis=1, keepdims=True
        ))  # (bs, 1): lse_k l_ik - l_ii, as in the forward pass
        p = ops.where(ok, ops.exp(a - r), 0.0)  # row softmax
        b = ops.where(ok, logits - diag[None, :] - q[None, :], NEG_INF)
        g = half_over_b * (p + ops.exp(b))  # (bs, Bp): dL/dl without delta
        dx = ops.slice_update(dx, (i * st.bs, 0), s * ops.matmul(g, yp))
        dy = dy + s * ops.matmul(ops.transpose(g), xb)
        ds = ds + ops.sum(g * cos)
        return dx, dy, ds

    zeros = ops.zeros((st.padded, st.width), "float32")
    dx, dy, ds = sequential_fori_loop(st.n, body, (zeros, zeros, ops.zeros((), "float32")))
    # The -delta_ij / B part of G (padded rows are zero, so they add nothing).
    dx = dx[: st.batch] - s * y / st.batch_f
    dy = dy[: st.batch] - s * x / st.batch_f
    ds = ds - ops.sum(x * y) / st.batch_f
    return dx, dy, ds


def _grad_upstream(args, upstream):
    if upstream is None:
        (upstream,) = args
    return ops.cast(upstream, "float32")


def blockwise_infonce(
    image_embeddings, text_embeddings, logit_scale, block_size=DEFAULT_BLOCK_SIZE
):
    """Symmetric InfoNCE (CLIP) computed in strips, without the B x B logits.

    The same value as `infonce` (decoupled=False): with `l_ij = s <x_i, y_j>`,

        loss = 1/(2B) sum_i [ logsumexp_k l_ik - l_ii ]
             + 1/(2B) sum_j [ logsumexp_k l_kj - l_jj ],

    the mean of `CE(logits, arange(B))` and `CE(logits.T, arange(B))`. The
    rows are taken `block_size` at a time; column log-sum-exps are streamed
    across strips, and the backward pass recomputes each strip, so memory is
    O(block_size * B) rather than O(B^2). Gradients flow to both embeddings
    and to `logit_scale`.

    References: Radford et al. 2021 (arXiv:2103.00020, CLIP); the blockwise
    scheme follows the memory-efficient contrastive losses of Chen et al.
    2023 ("DisCo-CLIP", arXiv:2304.08480) and FlashAttention's streaming
    log-sum-exp (Dao et al. 2022, arXiv:2205.14135).

    Args:
        image_embeddings: (B, D) L2-normalised image embeddings (any float
            dtype; computed in float32).
        text_embeddings: (B, D) L2-normalised text embeddings.
        logit_scale: scalar inverse temperature (already exp'd).
        block_size: int, rows of logits per strip (memory ~ 4 * block_size
            * B * 6 bytes during the backward pass). Defaults to 256.

    Returns:
        scalar float32 loss.

    Example:

    >>> import numpy as np
    >>> e = np.eye(8, dtype="float32")
    >>> print(f"{float(blockwise_infonce(e, e, 10.0, block_size=3)):.4e}")
    3.1775e-04
    """
    block_size = _check_block_size(block_size)
    x, y = _prepare(image_embeddings, text_embeddings)
    scale = as_scalar_float32(logit_scale, "logit_scale")

    @ops.custom_gradient
    def loss_fn(x, y, s):
        loss, q = _infonce_forward(x, y, s, block_size)

        def grad(*args, upstream=None):
            g = _grad_upstream(args, upstream)
            dx, dy, ds = _infonce_backward(x, y, s, q, block_size)
            return g * dx, g * dy, g * ds

        return loss, grad

    return loss_fn(x, y, scale)


# ------------------------------------------------------------------- SigLIP
def _siglip_strip(st, xp, yp, s, bias, i):
    """Strip i: (cosines, logits, signs z, validity mask), each (bs, Bp)."""
    xb = st.rows(xp, i)
    cos = ops.matmul(xb, ops.transpose(yp))  # (bs, Bp)
    logits = s * cos + bias
    rows = st.row_ids(i)
    cols = ops.arange(st.padded, dtype="int32")
    z = ops.where(ops.equal(rows[:, None], cols[None, :]), 1.0, -1.0)
    ok = ops.logical_and((rows < st.batch)[:, None], st.column_valid()[None, :])
    return xb, cos, logits, z, ok


def _siglip_forward(x, y, s, bias, block_size):
    st = _Strips(x, block_size)
    xp, yp = st.pad(x), st.pad(y)

    def body(i, total):
        _, _, logits, z, ok = _siglip_strip(st, xp, yp, s, bias, i)
        return total - ops.sum(ops.where(ok, ops.log_sigmoid(z * logits), 0.0))

    total = sequential_fori_loop(st.n, body, ops.zeros((), "float32"))
    return total / st.batch_f


def _siglip_backward(x, y, s, bias, block_size):
    st = _Strips(x, block_size)
    xp, yp = st.pad(x), st.pad(y)

    def body(i, carry):
        dx, dy, ds, db = carry
        xb, cos, logits, z, ok = _siglip_strip(st, xp, yp, s, bias, i)
        g = ops.where(ok, -z * ops.sigmoid(-z * logits), 0.0) / st.batch_f
        dx = ops.slice_update(dx, (i * st.bs, 0), s * ops.matmul(g, yp))
        dy = dy + s * ops.matmul(ops.transpose(g), xb)
        return dx, dy, ds + ops.sum(g * cos), db + ops.sum(g)

    zeros = ops.zeros((st.padded, st.width), "float32")
    scalar = ops.zeros((), "float32")
    dx, dy, ds, db = sequential_fori_loop(st.n, body, (zeros, zeros, scalar, scalar))
    return dx[: st.batch], dy[: st.batch], ds, db


def blockwise_siglip(
    image_embeddings,
    text_embeddings,
    logit_scale,
    logit_bias,
    block_size=DEFAULT_BLOCK_SIZE,
):
    """SigLIP sigmoid loss computed in strips, without the B x B logits.

    The same value as `siglip`: with `z_ij = +1` if i == j else -1,

        loss = -(1/B) sum_{i,j} log_sigmoid( z_ij (t <x_i, y_j> + b) ),

    summed `block_size` rows at a time; the backward pass recomputes each
    strip. Gradients flow to both embeddings, `logit_scale` `t` and
    `logit_bias` `b`.

    Reference: Zhai et al. 2023, "Sigmoid Loss for Language Image
    Pre-Training", arXiv:2303.15343 (which also describes the chunked
    computation across devices).

    Args:
        image_embeddings: (B, D) L2-normalised image embeddings.
        text_embeddings: (B, D) L2-normalised text embeddings.
        logit_scale: scalar `t` (already exp'd).
        logit_bias: scalar `b`.
        block_size: int, rows of logits per strip. Defaults to 256.

    Returns:
        scalar float32 loss (sum over pairs divided by B).

    Example:

    >>> import numpy as np
    >>> e = np.ones((4, 1), dtype="float32")  # x.y = 1 everywhere
    >>> loss = blockwise_siglip(e, e, 10.0, -10.0, block_size=3)
    >>> print(f"{float(loss):.4f}")  # 4 log 2
    2.7726
    """
    block_size = _check_block_size(block_size)
    x, y = _prepare(image_embeddings, text_embeddings)
    scale = as_scalar_float32(logit_scale, "logit_scale")
    bias = as_scalar_float32(logit_bias, "logit_bias")

    @ops.custom_gradient
    def loss_fn(x, y, s, b):
        loss = _siglip_forward(x, y, s, b, block_size)

        def grad(*args, upstream=None):
            g = _grad_upstream(args, upstream)
            dx, dy, ds, db = _siglip_backward(x, y, s, b, block_size)
            return g * dx, g * dy, g * ds, g * db

        return loss, grad

    return loss_fn(x, y, scale, bias)


# ------------------------------------------------------------ Loss wrappers
@keras.saving.register_keras_serializable(package="keras_clip")
class BlockwiseInfoNCE(ContrastiveLoss):
    """Symmetric InfoNCE on the CLIP output dict, in strips of logits.

    Same value and gradients as `InfoNCE()` but memory O(block_size * B):
    use it for very large batches. Reads `y_pred["image_embeddings"]`,
    `y_pred["text_embeddings"]`, `y_pred["logit_scale"]`; `y_true` is
    ignored. See `blockwise_infonce`. Reference: arXiv:2103.00020.

    Args:
        block_size: int, rows of logits per strip. Defaults to 256.
        name: optional name.

    Example:

    >>> import numpy as np
    >>> e = np.eye(4, dtype="float32")
    >>> y_pred = {"image_embeddings": e, "text_embeddings": e,
    ...           "logit_scale": np.float32(1.0)}
    >>> print(f"{float(BlockwiseInfoNCE(block_size=3)(None, y_pred)):.4f}")
    0.7437
    """

    def __init__(self, block_size=DEFAULT_BLOCK_SIZE, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.block_size = _check_block_size(block_size)

    def call(self, y_true, y_pred):
        return blockwise_infonce(
            self._require(y_pred, "image_embeddings"),
            self._require(y_pred, "text_embeddings"),
            self._require(y_pred, "logit_scale"),
            block_size=self.block_size,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"block_size": self.block_size})
        return config


@keras.saving.register_keras_serializable(package="keras_clip")
class BlockwiseSigLIP(ContrastiveLoss):
    """SigLIP sigmoid loss on the CLIP output dict, in strips of logits.

    Same value and gradients as `SigLIP()` but memory O(block_size * B).
    Reads `image_embeddings`, `text_embeddings`, `logit_scale` and
    `logit_bias` (a model built with `CLIP(..., logit_bias_init=-10.0)`).
    See `blockwise_siglip`. Reference: arXiv:2303.15343.

    Args:
        block_size: int, rows of logits per strip. Defaults to 256.
        name: optional name.

    Example:

    >>> import numpy as np
    >>> e = np.ones((4, 1), dtype="float32")
    >>> y_pred = {"image_embeddings": e, "text_embeddings": e,
    ...           "logit_scale": 10.0, "logit_bias": -10.0}
    >>> print(f"{float(BlockwiseSigLIP(block_size=3)(None, y_pred)):.4f}")
    2.7726
    """

    def __init__(self, block_size=DEFAULT_BLOCK_SIZE, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.block_size = _check_block_size(block_size)

    def call(self, y_true, y_pred):
        return blockwise_siglip(
            self._require(y_pred, "image_embeddings"),
            self._require(y_pred, "text_embeddings"),
            self._require(y_pred, "logit_scale"),
            self._require(y_pred, "logit_bias"),
            block_size=self.block_size,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"block_size": self.block_size})
        return config
