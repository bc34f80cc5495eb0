"""The chunked, custom-gradient token similarities behind FILIP (see
`keras_clip.losses.filip` for the memory story)."""


from keras import ops

from keras_clip.losses._common import NEG_INF
from keras_clip.losses._common import dim
from keras_clip.losses._common import to_bool_mask


def float_mask(mask, tokens, name):
    """None / bool / 0-1 mask -> float32 (B, N) of 0.0 and 1.0."""
    if mask is None:
        return ops.ones_like(tokens[:, :, 0])  # (B, N) float32
    mask = to_bool_mask(mask)
    if len(mask.shape) != 2:
        raise ValueError(
            f"`{name}` must have shape (batch, tokens), but it has shape "
            f"{tuple(mask.shape)}."
        )
    for axis in (0, 1):
        m, t = mask.shape[axis], tokens.shape[axis]
        if m is not None and t is not None and m != t:
            raise ValueError(
                f"`{name}` has shape {tuple(mask.shape)} but the tokens have "
                f"shape {tuple(tokens.shape)}; the mask must be (batch, "
                "tokens) of the same tokens."
            )
    return ops.cast(mask, "float32")


def _with_mask_features(tokens, mask, mask_last):
    """Appends two features that fold the token mask into the dot product.

    Images get `[x, 1, m_x]` and texts `[y, m_y, 1]`, with `m = 0` for a
    valid token and `-1e9` for an invalid one, so that

        <[x, 1, m_x], [y, m_y, 1]> = <x, y> + m_y + m_x.

    A pair of valid tokens keeps its exact score (the extra terms are exact
    zeros); a pair with an invalid token drops to about -1e9, out of every
    max. One matmul then serves both directions, and no masked copy of the
    (B, Ni, C, Nt) block is ever made.
    """
    neg = ops.expand_dims((1.0 - mask) * NEG_INF, -1)  # (B, N, 1)
    one = ops.ones_like(neg)
    extra = [one, neg] if mask_last else [neg, one]
    return ops.concatenate([tokens] + extra, axis=-1)  # (B, N, D + 2)


class _Side:
    """One operand of the late interaction: its tokens and mask statistics."""

    def __init__(self, tokens_aug, mask):
        self.tokens = tokens_aug  # (B, N, D + 2), mask folded in
        self.mask = mask  # (B, N) float 0/1
        self.count = ops.maximum(ops.sum(mask, axis=1), 1.0)  # (B,)
        self.any = ops.max(mask, axis=1)  # (B,) 1 if any valid token
        self.n_tokens = tokens_aug.shape[1]
        self.width = tokens_aug.shape[2] - 2


def _block(rows, cols_tokens):
    """S[u, p, v, q] = <row token (u, p), chunk token (v, q)>, one matmul.

    Args:
        rows: `_Side` with Br sequences of Np tokens (all of them).
        cols_tokens: (C, Nq, D + 2) one chunk of the other side.
    Returns:
        (Br, Np, C, Nq) masked scores.
    """
    c, n_q, w = cols_tokens.shape
    r2 = ops.reshape(rows.tokens, (-1, w))  # (Br*Np, D+2)
    s = ops.matmul(r2, ops.transpose(ops.reshape(cols_tokens, (c * n_q, w))))
    return ops.reshape(s, (-1, rows.n_tokens, c, n_q))


def _chunk_scores(rows, cols_tokens, cols_mask):
    """Both late-interaction scores of all rows against one chunk.

    Returns (2, Br, C): [0] = mean over the row's valid tokens of the max
    over the chunk sequence's valid tokens; [1] = mean over the chunk
    sequence's valid tokens of the max over the row's valid tokens.
    """
    s = _block(rows, cols_tokens)  # (Br, Np, C, Nq)
    cols_count = ops.maximum(ops.sum(cols_mask, axis=1), 1.0)  # (C,)
    cols_any = ops.max(cols_mask, axis=1)  # (C,)
    best_q = ops.max(s, axis=3)  # (Br, Np, C)
    best_q = ops.where(rows.mask[:, :, None] > 0, best_q, 0.0)
    row_view = ops.sum(best_q, axis=1) / rows.count[:, None]  # (Br, C)
    row_view = ops.where(cols_any[None, :] > 0, row_view, 0.0)
    best_p = ops.max(s, axis=1)  # (Br, C, Nq)
    best_p = ops.where(cols_mask[None, :, :] > 0, best_p, 0.0)
    col_view = ops.sum(best_p, axis=2) / cols_count[None, :]  # (Br, C)
    col_view = ops.where(rows.any[:, None] > 0, col_view, 0.0)
    return ops.stack([row_view, col_view], axis=0)  # (2, Br, C)


def _chunk_grad(rows, cols_tokens, cols_mask, g_rows, g_cols):
    """Gradient of the two scores w.r.t. one chunk's (plain) tokens.

    Args:
        rows: `_Side`, all Br sequences.
        cols_tokens: (C, Nq, D + 2), cols_mask: (C, Nq).
        g_rows: (C, Br) upstream of the row view (see `_chunk_scores`),
            transposed.
        g_cols: (C, Br) upstream of the column view, transposed.
    Returns:
        (C, Nq, D) gradient for the chunk tokens.
    """
    c, n_q, w = cols_tokens.shape
    n_p, d = rows.n_tokens, rows.width
    # The block is built transposed, S_t[v, q, u, p], so that the final
    # matmul needs no transposed copy of the block-sized gradient.
    cols2 = ops.reshape(cols_tokens, (c * n_q, w))  # (C*Nq, D+2)
    rows2 = ops.reshape(rows.tokens, (-1, w))  # (Br*Np, D+2)
    s = ops.matmul(cols2, ops.transpose(rows2))  # (C*Nq, Br*Np)
    s = ops.reshape(s, (c, n_q, -1, n_p))  # (C, Nq, Br, Np), recomputed
    # Where each max is attained; ties share the gradient equally, as the
    # autodiff of `max` does on every backend.
    at_q = ops.equal(s, ops.max(s, axis=1, keepdims=True))  # max over q
    ties_q = ops.sum(ops.cast(at_q, "float32"), axis=1)  # (C, Br, Np)
    at_p = ops.equal(s, ops.max(s, axis=3, keepdims=True))  # max over p
    ties_p = ops.sum(ops.cast(at_p, "float32"), axis=3)  # (C, Nq, Br)
    del s
    cols_count = ops.maximum(ops.sum(cols_mask, axis=1), 1.0)  # (C,)
    cols_any = ops.max(cols_mask, axis=1)  # (C,)
    # Row view: d/dS at the max over q, for every valid row token p.
    w_rows = (
        g_rows[:, :, None]
        * rows.mask[None, :, :]
        / (rows.count[None, :, None] * ties_q)
        * cols_any[:, None, None]
    )  # (C, Br, Np)
    # Column view: d/dS at the max over p, for every valid chunk token q.
    w_cols = (
        g_cols[:, None, :]
        * cols_mask[:, :, None]
        / (cols_count[:, None, None] * ties_p)
        * rows.any[None, None, :]
    )  # (C, Nq, Br)
    d_s = ops.where(at_q, w_rows[:, None, :, :], 0.0) + ops.where(
        at_p, w_cols[:, :, :, None], 0.0
    )  # (C, Nq, Br, Np) = dL/dS_t on this block
    d_s = ops.reshape(d_s, (c * n_q, -1))  # (C*Nq, Br*Np)
    rows_plain = ops.reshape(rows.tokens[:, :, :d], (-1, d))  # (Br*Np, D)
    d_cols = ops.matmul(d_s, rows_plain)  # (C*Nq, D)
    return ops.reshape(d_cols, (c, n_q, d))


class _Chunks:
    """Cuts the leading (batch) axis into `count` zero-padded chunks."""

    def __init__(self, batch, chunk_size):
        if isinstance(batch, int):
            self.size = max(1, min(int(chunk_size), batch))
            self.count = -(-batch // self.size)
        else:  # batch only known at run time (TensorFlow graph)
            self.size = int(chunk_size)
            self.count = (batch + self.size - 1) // self.size
        self.batch = batch
        self.pad = self.count * self.size - batch

    def split(self, t):
        """(B, ...) -> (count, size, ...), zero padded."""
        t = ops.pad(t, [[0, self.pad]] + [[0, 0]] * (len(t.shape) - 1))
        rest = [
            d if d is not None else ops.shape(t)[i + 1]
            for i, d in enumerate(t.shape[1:])
        ]
        return ops.reshape(t, [self.count, self.size] + rest)

    def merge(self, t):
        """(count, size, N, D) -> (B, N, D), padding dropped."""
        return ops.reshape(t, (-1,) + tuple(t.shape[2:]))[: self.batch]


def _scan_chunks(fn, chunked_inputs, out_shape, count):
    """Sequentially maps `fn` over the chunks; returns the stacked outputs.

    `ops.scan` with a pass-through carry shaped like one output: unlike
    `ops.map` / `ops.fori_loop` (TensorFlow runs up to 10 iterations of
    those in parallel in graph mode), TensorFlow's scan runs one chunk at a
    time, so only one chunk's blocks are alive on every backend. The scan
    runs over the chunk indices (a single input, which keeps keras'
    TensorFlow scan happy when the number of chunks is only known at run
    time) and each step gathers its chunk.
    """

    def step(carry, i):
        return carry, fn(*[ops.take(t, i, axis=0) for t in chunked_inputs])

    _, ys = ops.scan(step, ops.zeros(out_shape), ops.arange(count))
    return ys


def token_similarities(x, y, x_mask, y_mask, chunk_size):
    """(2, Ba, Bb) stack of [sim_i2t, sim_t2i^T], both indexed [a, b].

    `x`, `y`: float32 tokens with invalid tokens already zeroed; `x_mask`,
    `y_mask`: float32 0/1. Custom gradient, see the module docstring.
    """
    for t, name in ((x, "image_tokens"), (y, "text_tokens")):
        if t.shape[1] is None or t.shape[2] is None:
            raise ValueError(
                f"filip needs a static token count and width; `{name}` has "
                f"shape {tuple(t.shape)}."
            )
    n_i, n_t, d = x.shape[1], y.shape[1], x.shape[2]
    batch_a, batch_b = dim(x, 0), dim(y, 0)
    a_chunks = _Chunks(batch_a, chunk_size)
    b_chunks = _Chunks(batch_b, chunk_size)

    @ops.custom_gradient
    def similarities(x, y, x_mask, y_mask):
        # The forward pass is never differentiated (the gradient is below):
        # stop_gradient keeps an eager TensorFlow tape from holding on to
        # every chunk's block.
        x, y, x_mask, y_mask = [
            ops.stop_gradient(t) for t in (x, y, x_mask, y_mask)
        ]
        images = _Side(_with_mask_features(x, x_mask, True), x_mask)
        texts = _Side(_with_mask_features(y, y_mask, False), y_mask)

        # Forward: all images against one chunk of texts at a time.
        scores = _scan_chunks(
            lambda t, m: _chunk_scores(images, t, m),
            (b_chunks.split(texts.tokens), b_chunks.split(texts.mask)),
            (2, batch_a, b_chunks.size),
            b_chunks.count,
        )  # (n_b, 2, Ba, C)
        out = ops.reshape(
            ops.transpose(scores, (1, 2, 0, 3)), (2, batch_a, -1)
        )[:, :, :batch_b]  # (2, Ba, Bb)

        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow / JAX call grad(upstream)
                (upstream,) = args
            upstream = ops.cast(upstream, "float32")  # (2, Ba, Bb)
            g_i2t, g_t2i = upstream[0], upstream[1]  # (Ba, Bb) each

            # d/d texts: all images against one chunk of texts.
            dy = _scan_chunks(
                lambda t, m, g1, g2: _chunk_grad(images, t, m, g1, g2),
                (
                    b_chunks.split(texts.tokens),
                    b_chunks.split(texts.mask),
                    b_chunks.split(ops.transpose(g_i2t)),  # (n, C, Ba)
                    b_chunks.split(ops.transpose(g_t2i)),
                ),
                (b_chunks.size, n_t, d),
                b_chunks.count,
            )  # (n_b, C, Nt, D)

            # d/d images: all texts against one chunk of images. The roles
            # swap: the rows (texts) now see t2i, the chunk columns i2t.
            dx = _scan_chunks(
                lambda t, m, g2, g1: _chunk_grad(texts, t, m, g2, g1),
                (
                    a_chunks.split(images.tokens),
                    a_chunks.split(images.mask),
                    a_chunks.split(g_t2i),  # (n, C, Bb)
                    a_chunks.split(g_i2t),
                ),
                (a_chunks.size, n_i, d),
                a_chunks.count,
            )  # (n_a, C, Ni, D)
            return (
                a_chunks.merge(dx),
                b_chunks.merge(dy),
                ops.zeros_like(x_mask),
                ops.zeros_like(y_mask),
            )

        return out, grad

    return similarities(x, y, x_mask, y_mask)
