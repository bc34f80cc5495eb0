"""The ViT patch embedding as one matmul over flattened patches.

keras-hub's `CLIPVisionEmbedding` embeds patches with a `Conv2D` whose
stride equals its kernel size. That is a matmul of each flattened
`p x p x C` patch with the kernel reshaped to `(p * p * C, width)`, and
XLA's CPU backend runs the matmul far faster than its convolution: for a
batch of 64 images of 224 px with patches of 32 and width 256, 48 against
127 ms forward and 71 against 126 ms for the kernel's gradient (JAX 0.10,
2-core AVX2 CPU). The kernel variable is unchanged (same name, shape
`(p, p, C, width)` in HWIO order, same checkpoints).
"""

import keras
from keras import ops


def patchify_call(conv):
    """A `call` for the channels-last `Conv2D` `conv` (kernel size = stride,
    valid padding, no dilation or groups) that computes the same output as
    a reshape of the input into patches and one matmul."""
    p_h, p_w = conv.kernel_size
    if tuple(conv.strides) != (p_h, p_w) or conv.padding != "valid" or conv.data_format != "channels_last" \
            or tuple(conv.dilation_rate) != (1, 1) or conv.groups != 1:
        raise ValueError(
            f"patchify_call needs a channels-last Conv2D with strides equal to its kernel size, valid padding, "
            f"no dilation and one group; received kernel_size={conv.kernel_size}, strides={conv.strides}, "
            f"padding={conv.padding!r}, data_format={conv.data_format!r}, dilation_rate={conv.dilation_rate}, "
            f"groups={conv.groups}."
        )

    def call(inputs):
        height, width, channels = inputs.shape[1:]
        rows, cols = height // p_h, width // p_w
        x = inputs[:, : rows * p_h, : cols * p_w, :]  # "valid": a remainder is dropped
        x = ops.reshape(x, (-1, rows, p_h, cols, p_w, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        x = ops.reshape(x, (-1, rows, cols, p_h * p_w * channels))
        outputs = ops.matmul(x, ops.reshape(conv.kernel, (p_h * p_w * channels, conv.filters)))
        if conv.use_bias:
            outputs = ops.add(outputs, conv.bias)
        return conv.activation(outputs) if conv.activation is not None else outputs

    return call


def use_matmul_patch_embedding(image_encoder):
    """On JAX, embed `image_encoder`'s patches with `patchify_call` (where
    measured faster); elsewhere, and for towers without keras-hub's
    patch convolution, nothing changes."""
    embedding = getattr(image_encoder, "embedding", None)
    conv = getattr(embedding, "patch_embedding", None)
    if keras.backend.backend() != "jax" or not isinstance(conv, keras.layers.Conv2D):
        return
    if "call" not in vars(conv):
        conv.call = patchify_call(conv)
