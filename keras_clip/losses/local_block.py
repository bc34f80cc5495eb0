"""The local-loss layout of a data-parallel step: one replica's rows only.

With the global batch split over N replicas, replica r holds B_r of the
B = sum_r B_r pairs. Instead of each replica computing the whole B x B
matrix, it computes only the rows of its own samples against every
gathered column (open_clip's `local_loss`):

    image -> text:  logit_scale * x_local @ y_global.T    (B_r, B)
    text -> image:  logit_scale * y_local @ x_global.T    (B_r, B)

The positive of local row i is global column `offset + i`, where `offset`
is the number of samples on the replicas before r. Each block is divided by
the *global* B, so the blocks' losses sum to the full loss over replicas:
sum_r loss_r = loss(B x B), and their gradients (summed over replicas by
the optimizer) sum to the full loss's gradient. Memory per replica: logits
2 x B_r x B instead of B x B (plus the gathered B x D embeddings).

Supported: symmetric InfoNCE (and its decoupled variant, DCL) and SigLIP;
`local_block_loss` says which objectives have no local block.
"""

from keras import ops

from keras_clip.losses._common import NEG_INF
from keras_clip.losses._common import as_float32
from keras_clip.losses._common import as_scalar_float32
from keras_clip.losses._common import dim
from keras_clip.losses._common import positive_cross_entropy
from keras_clip.losses.infonce import InfoNCE
from keras_clip.losses.siglip import SigLIP


def _positive_mask(rows, columns, offset):
    """(rows, columns) bool: True at (i, offset + i)."""
    row_ids = ops.arange(rows) + ops.cast(offset, "int32")
    return ops.equal(ops.expand_dims(row_ids, 1), ops.expand_dims(ops.arange(columns), 0))


def _block_rows(logits, positive, decoupled):
    """Per-row cross-entropy of a (B_r, B) block whose positives are `positive`."""
    pos = ops.sum(ops.where(positive, logits, 0.0), axis=1)  # (B_r,)
    margins = ops.where(positive, NEG_INF, logits - ops.expand_dims(pos, 1))  # (B_r, B)
    if decoupled:
        return ops.logsumexp(margins, axis=1)  # -l_ii + logsumexp_{k != i} l_ik
    return positive_cross_entropy(margins)


def infonce_local_block(local_image, local_text, global_image, global_text, logit_scale, offset, decoupled=False):
    """This replica's share of symmetric InfoNCE over the global batch.

    Summed over the replicas (each with its own rows and `offset`), the
    result equals `infonce(global_image, global_text, logit_scale,
    decoupled)`.

    Args:
        local_image, local_text: (B_r, D) this replica's embeddings.
        global_image, global_text: (B, D) every replica's, in replica order.
        logit_scale: scalar, already exp'd.
        offset: int or scalar tensor, the global index of local row 0.
        decoupled: bool, DCL (positive left out of the denominator).

    Returns:
        scalar float32: (sum of the 2 x B_r row losses) / (2 B).
    """
    x, y = as_float32(local_image), as_float32(local_text)
    gx, gy = as_float32(global_image), as_float32(global_text)
    scale = as_scalar_float32(logit_scale, "logit_scale")
    rows, columns = dim(x, 0), dim(gy, 0)
    positive = _positive_mask(rows, columns, offset)  # (B_r, B)
    i2t = _block_rows(scale * ops.matmul(x, ops.transpose(gy)), positive, decoupled)  # (B_r,)
    t2i = _block_rows(scale * ops.matmul(y, ops.transpose(gx)), positive, decoupled)  # (B_r,)
    return 0.5 * (ops.sum(i2t) + ops.sum(t2i)) / ops.cast(columns, "float32")


def siglip_local_block(local_image, global_text, logit_scale, logit_bias, offset):
    """This replica's share of the SigLIP loss: its image rows against every
    text. Summed over the replicas, equals `siglip(global_image, global_text,
    ...)` (sum over all B x B pairs, divided by B)."""
    x, gy = as_float32(local_image), as_float32(global_text)
    scale = as_scalar_float32(logit_scale, "logit_scale")
    bias = as_scalar_float32(logit_bias, "logit_bias")
    columns = dim(gy, 0)
    logits = scale * ops.matmul(x, ops.transpose(gy)) + bias  # (B_r, B)
    signs = ops.where(_positive_mask(dim(x, 0), columns, offset), 1.0, -1.0)
    return -ops.sum(ops.log_sigmoid(signs * logits)) / ops.cast(columns, "float32")


def local_block_loss(loss, local_pred, global_pred, offset):
    """The local-layout value of the `keras_clip.losses` object `loss`.

    Args:
        loss: an `InfoNCE` or `SigLIP` loss object.
        local_pred: this replica's model outputs (embeddings (B_r, D), scale).
        global_pred: the same keys gathered over replicas ((B, D)).
        offset: the global index of this replica's first sample.

    Raises:
        ValueError for an objective without a local block (name and fix).
    """
    if type(loss) is InfoNCE:
        return infonce_local_block(
            local_pred["image_embeddings"], local_pred["text_embeddings"],
            global_pred["image_embeddings"], global_pred["text_embeddings"],
            local_pred["logit_scale"], offset, decoupled=loss.decoupled,
        )
    if type(loss) is SigLIP:
        return siglip_local_block(
            local_pred["image_embeddings"], global_pred["text_embeddings"],
            local_pred["logit_scale"], loss._require(local_pred, "logit_bias"), offset,
        )
    raise ValueError(
        f"The local-loss layout has a block for InfoNCE (and DCL) and SigLIP only; received the "
        f"objective {type(loss).__name__}. Use the full layout (training.distribution: data_parallel, "
        "or compile(..., loss_layout='full')), which computes any batch-level objective on the gathered batch."
    )
