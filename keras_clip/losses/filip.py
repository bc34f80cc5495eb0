"""FILIP: fine-grained (token-level) contrastive loss, computed in chunks.

Memory. The token similarity tensor `S[a, p, b, q] = <x_ap, y_bq>` has
B * B * Ni * Nt entries: about 1 GB in float32 for B=256, Ni=50, Nt=77. It is
never built whole. The text batch (the *second* operand) is cut into chunks
of `chunk_size` sequences, and a sequential `ops.scan` computes one
(B, Ni, chunk, Nt) block at a time: 63 MB for the default chunk of 16 at
that size.
The padding mask is folded into the features (two extra coordinates, see
`_with_mask_features`), so a block is a single matmul with no masked copy.

The backward pass is chunked too. Plain autodiff of a chunked loop keeps
every chunk's block alive until the backward pass (a max-reduction saves its
input), which would bring the full 1 GB back. So the similarity has a custom
gradient (`ops.custom_gradient`): the backward pass recomputes the blocks
chunk by chunk and routes the upstream gradient to where each max is
attained (ties share it equally, like autodiff of `max`): one scan over text
chunks for the text-token gradient, one over image chunks for the
image-token gradient. Only first derivatives are provided.

Measured on CPU at B=256, Ni=50, Nt=77, D=512 by `benchmarks/filip_memory.py`
(growth of the process's peak resident memory for value + gradient):
with the default chunk of 16, TensorFlow 719 MB, JAX 452 MB (XLA counts
314 MB of temporaries), PyTorch 539 MB; with chunks of 32, 1265 / 665 /
838 MB (TensorFlow's allocator keeps more than the others, which is why
the default is 16). The peak scales about linearly with `chunk_size`.
"""

import keras
from keras import ops

from keras_clip.losses._common import as_float32
from keras_clip.losses._common import as_scalar_float32
from keras_clip.losses._common import check_rank
from keras_clip.losses._common import check_same_batch
from keras_clip.losses._common import check_same_width
from keras_clip.losses._common import diagonal_cross_entropy
from keras_clip.losses.base import ContrastiveLoss
from keras_clip.losses.filip_blocks import float_mask, token_similarities


def filip_similarity(
    image_tokens,
    text_tokens,
    image_mask=None,
    text_mask=None,
    chunk_size=16,
):
    """FILIP token-wise late-interaction similarities, both directions.

    With `x_ap` the p-th (valid) token of image a and `y_bq` the q-th (valid)
    token of text b:

        sim_i2t[a, b] = mean_{p valid in a} max_{q valid in b} <x_ap, y_bq>
        sim_t2i[b, a] = mean_{q valid in b} max_{p valid in a} <x_ap, y_bq>

    Invalid (masked) tokens never change the result, whatever they hold
    (even inf / NaN): they are zeroed, their scores are pushed to about -1e9
    so no max picks them, and they are left out of the means. A sequence
    with no valid token at all has similarity 0 with everything.

    Computed in chunks of `chunk_size` sequences of the second operand (the
    texts), forward and backward, so the full (B, B, Ni, Nt) tensor is never
    materialised (see the module docstring).

    Reference: Yao et al. 2021, "FILIP: Fine-grained Interactive
    Language-Image Pre-Training", arXiv:2111.07783 (eq. 4-5).

    Args:
        image_tokens: (Ba, Ni, D) L2-normalised (per token) image tokens.
        text_tokens: (Bb, Nt, D) L2-normalised text tokens.
        image_mask: optional (Ba, Ni) bool or 0/1, True = valid token.
        text_mask: optional (Bb, Nt) bool or 0/1, True = valid token.
        chunk_size: int, texts per chunk. Lower it to save memory.

    Returns:
        `(sim_i2t, sim_t2i)`: float32 (Ba, Bb) and (Bb, Ba).

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> img = np.array([[[1, 0], [0, 1]]], dtype="float32")  # 1 image, 2 tokens
    >>> txt = np.array([[[1, 0], [1, 0]]], dtype="float32")  # 1 text, 2 tokens
    >>> i2t, t2i = filip_similarity(img, txt)
    >>> float(i2t[0, 0]), float(t2i[0, 0])  # (1 + 0) / 2, (1 + 1) / 2
    (0.5, 1.0)
    """
    x = as_float32(image_tokens)
    y = as_float32(text_tokens)
    check_rank(x, 3, "image_tokens")
    check_rank(y, 3, "text_tokens")
    check_same_width(x, y, "image_tokens", "text_tokens")
    if int(chunk_size) < 1:
        raise ValueError(
            f"`chunk_size` must be a positive int; received {chunk_size}."
        )
    x_mask = float_mask(image_mask, x, "image_mask")
    y_mask = float_mask(text_mask, y, "text_mask")
    # Zero the invalid tokens, so that even inf / NaN padding is harmless.
    x = ops.where(x_mask[:, :, None] > 0, x, 0.0)
    y = ops.where(y_mask[:, :, None] > 0, y, 0.0)
    sims = token_similarities(x, y, x_mask, y_mask, chunk_size)
    return sims[0], ops.transpose(sims[1])


def filip(
    image_tokens,
    text_tokens,
    logit_scale,
    image_mask=None,
    text_mask=None,
    chunk_size=16,
):
    """FILIP fine-grained contrastive loss (token-wise max similarity).

    With `filip_similarity` giving `sim_i2t` (B, B) and `sim_t2i` (B, B) and
    `s = logit_scale`:

        loss = ( CE(s * sim_i2t, arange(B)) + CE(s * sim_t2i, arange(B)) ) / 2

    where CE is the mean row-wise cross-entropy. With a single token per
    sequence this reduces to `infonce`. Padding tokens (mask False) never
    change the loss. Batch of 1: exactly 0, as for `infonce`.

    Reference: Yao et al. 2021, arXiv:2111.07783.

    Args:
        image_tokens: (B, Ni, D) L2-normalised image tokens (global token
            excluded).
        text_tokens: (B, Nt, D) L2-normalised text tokens.
        logit_scale: scalar inverse temperature (already exp'd).
        image_mask: optional (B, Ni) bool or 0/1 valid-token mask.
        text_mask: optional (B, Nt) bool or 0/1 valid-token mask.
        chunk_size: int, texts per chunk (memory / speed trade-off).

    Returns:
        scalar float32 mean loss.

    Example:

    >>> import numpy as np
    >>> tokens = np.eye(4, dtype="float32")[:, None, :]  # 4 x 1 token
    >>> print(f"{float(filip(tokens, tokens, 1.0)):.4f}")  # = infonce
    0.7437
    """
    x = as_float32(image_tokens)
    y = as_float32(text_tokens)
    check_rank(x, 3, "image_tokens")
    check_rank(y, 3, "text_tokens")
    check_same_batch(x, y, "image_tokens", "text_tokens")
    scale = as_scalar_float32(logit_scale, "logit_scale")
    sim_i2t, sim_t2i = filip_similarity(
        x, y, image_mask, text_mask, chunk_size
    )
    loss_i2t = ops.mean(diagonal_cross_entropy(scale * sim_i2t))
    loss_t2i = ops.mean(diagonal_cross_entropy(scale * sim_t2i))
    return 0.5 * (loss_i2t + loss_t2i)


@keras.saving.register_keras_serializable(package="keras_clip")
class FILIP(ContrastiveLoss):
    """FILIP token-level contrastive loss on the CLIP output dict.

    Uses `y_pred["image_tokens"]` (B, Ni, D), `y_pred["text_tokens"]`
    (B, Nt, D), `y_pred["logit_scale"]`, and the optional masks
    `y_pred["text_token_mask"]` (B, Nt) and `y_pred["image_token_mask"]`
    (B, Ni) (absent = all tokens valid); `y_true` is ignored. See `filip`.
    Reference: arXiv:2111.07783.

    Args:
        chunk_size: int, texts per chunk. Defaults to 16.
        name: optional name.

    Example:

    >>> import numpy as np
    >>> tokens = np.eye(4, dtype="float32")[:, None, :]
    >>> y_pred = {"image_tokens": tokens, "text_tokens": tokens,
    ...           "logit_scale": 1.0}
    >>> print(f"{float(FILIP()(None, y_pred)):.4f}")
    0.7437
    """

    needs_tokens = True

    def __init__(self, chunk_size=16, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.chunk_size = int(chunk_size)

    def call(self, y_true, y_pred):
        return filip(
            self._require(y_pred, "image_tokens"),
            self._require(y_pred, "text_tokens"),
            self._require(y_pred, "logit_scale"),
            image_mask=y_pred.get("image_token_mask"),
            text_mask=y_pred.get("text_token_mask"),
            chunk_size=self.chunk_size,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"chunk_size": self.chunk_size})
        return config
