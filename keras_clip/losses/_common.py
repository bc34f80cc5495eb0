"""Shared numerics for the contrastive objectives (private).

Everything here is `keras.ops` only, so it runs unchanged on the TensorFlow,
JAX and PyTorch backends. All helpers work in float32: the public losses cast
their inputs with `as_float32` first, so float16 / bfloat16 embeddings never
reach an exp or a log-sum-exp.

Masking convention: an excluded logit is replaced (with `ops.where`) by
`NEG_INF = -1e9`, a finite float32 number. `exp(-1e9 - max)` underflows to an
exact 0 inside log-sum-exp, and unlike `-inf` it never produces `inf - inf =
NaN` in the forward pass or the gradient.
"""

from keras import ops
from keras import backend

# Large negative used to mask logits; finite in float32 (max ~3.4e38).
NEG_INF = -1e9


def as_float32(x):
    """Casts `x` (tensor, array or Python number) to a float32 tensor."""
    return ops.cast(x, "float32")


def as_scalar_float32(x, name):
    """Casts a scale / bias / temperature to a float32 scalar tensor.

    Accepts a Python number, a 0-d tensor or a 1-element tensor (for example
    a `(1,)` weight). Anything with more elements is an error.
    """
    x = as_float32(x)
    shape = tuple(x.shape)
    if len(shape) > 0:
        size = 1
        for d in shape:
            size = None if (d is None or size is None) else size * d
        if size is not None and size != 1:
            raise ValueError(
                f"`{name}` must be a scalar, but it has shape {shape}. Pass a "
                "single number (a 0-d tensor or a Python float)."
            )
        x = ops.reshape(x, ())
    return x


def static_dim(x, axis):
    """The size of `x` along `axis` if known while tracing, else None."""
    return x.shape[axis]


def dim(x, axis):
    """The size of `x` along `axis`: a Python int when static, else a tensor."""
    d = x.shape[axis]
    if d is None:
        d = ops.shape(x)[axis]
    return d


def check_rank(x, rank, name):
    if len(x.shape) != rank:
        raise ValueError(
            f"`{name}` must have rank {rank}, but it has shape "
            f"{tuple(x.shape)}."
        )


def check_same_batch(a, b, name_a, name_b):
    """Raises if two static batch sizes differ."""
    ba, bb = static_dim(a, 0), static_dim(b, 0)
    if ba == 0 or bb == 0:
        raise ValueError(
            f"`{name_a if ba == 0 else name_b}` is an empty batch (0 rows); a contrastive loss "
            "needs at least 2 pairs. Skip empty batches (batch with drop_remainder=True)."
        )
    if ba is not None and bb is not None and ba != bb:
        raise ValueError(
            f"`{name_a}` has batch {ba} but `{name_b}` has batch {bb}; the "
            "i-th rows must form the i-th positive pair, so pass the same "
            "number of rows for both."
        )


def check_same_width(a, b, name_a, name_b):
    """Raises if two static feature widths (last axis) differ."""
    da, db = static_dim(a, -1), static_dim(b, -1)
    if da is not None and db is not None and da != db:
        raise ValueError(
            f"`{name_a}` has width {da} but `{name_b}` has width {db}; both "
            "must live in the same embedding space (same last dimension)."
        )


def eye_mask(n):
    """(n, n) boolean identity; `n` may be a Python int or a scalar tensor."""
    idx = ops.arange(n)
    return ops.equal(ops.expand_dims(idx, 1), ops.expand_dims(idx, 0))


def decoupled_cross_entropy(logits):
    """Per-row decoupled loss: the positive is removed from the denominator.

    `loss_i = -logits_ii + logsumexp_{k != i} logits_ik` (DCL,
    arXiv:2110.06848). A row with no other column gives about -1e9 (an
    empty log-sum-exp is -inf; the mask constant stands in for it).

    Args:
        logits: (B, B) float32.
    Returns:
        (B,) float32.
    """
    n = dim(logits, 0)
    positive = ops.diagonal(logits)  # (B,)
    negatives = ops.where(eye_mask(n), NEG_INF, logits)  # (B, B)
    return ops.logsumexp(negatives - ops.expand_dims(positive, 1), axis=1)


def positive_cross_entropy(negatives_minus_positive):
    """Cross-entropy of one positive against negatives, from their margins.

    With `z_k = l_k - l_pos` for the negatives k (masked entries at about
    -1e9),

        CE = -l_pos + log(exp(l_pos) + sum_k exp(l_k))
           = log(1 + sum_k exp(z_k)) = softplus(logsumexp_k z_k).

    This is the same value as `logsumexp` over all logits minus the
    positive, but a small loss stays accurate in float32 (a loss of 3e-4 is
    not the difference of two numbers near 10), and with no negative at all
    the loss is exactly 0.

    Args:
        negatives_minus_positive: (R, K) float32 margins `l_k - l_pos`.
    Returns:
        (R,) float32.
    """
    return ops.softplus(ops.logsumexp(negatives_minus_positive, axis=1))


def diagonal_cross_entropy(logits):
    """Per-row cross-entropy with label i for row i.

    `loss_i = -log_softmax(logits)[i, i]
            = softplus(logsumexp_{k != i} (logits_ik - logits_ii))`,
    see `positive_cross_entropy`. Exactly 0 for a (1, 1) input.

    Args:
        logits: (B, B) float32.
    Returns:
        (B,) float32.
    """
    n = dim(logits, 0)
    positive = ops.diagonal(logits)  # (B,)
    negatives = ops.where(eye_mask(n), NEG_INF, logits)  # (B, B)
    return positive_cross_entropy(negatives - ops.expand_dims(positive, 1))


def mean_over_positives(log_probs, positive_mask):
    """L_out reduction of SupCon: mean over rows of -mean_{j in P(i)} log p_ij.

    Rows with no positive contribute nothing and are left out of the mean
    (no division by zero, no NaN); if no row has a positive the result is 0.

    Args:
        log_probs: (R, C) float32 log-probabilities.
        positive_mask: (R, C) bool.
    Returns:
        scalar float32.
    """
    counts = ops.sum(ops.cast(positive_mask, "float32"), axis=1)  # (R,)
    pos_sum = ops.sum(ops.where(positive_mask, log_probs, 0.0), axis=1)  # (R,)
    has_positive = counts > 0.0  # (R,)
    row_loss = ops.where(
        has_positive, -pos_sum / ops.maximum(counts, 1.0), 0.0
    )  # (R,)
    n_rows = ops.sum(ops.cast(has_positive, "float32"))
    return ops.sum(row_loss) / ops.maximum(n_rows, 1.0)


def to_bool_mask(mask):
    """bool or 0/1 (any numeric dtype) mask -> bool tensor."""
    mask = ops.convert_to_tensor(mask)
    if backend.standardize_dtype(mask.dtype) == "bool":
        return mask
    return ops.not_equal(mask, ops.zeros_like(mask))
