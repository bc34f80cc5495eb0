"""The matmul patch embedding equals keras-hub's patch convolution: same
kernel, same output, same kernel gradient, on every backend (and it is what
a CLIP built on JAX runs)."""

import keras
import numpy as np
import pytest

from keras_clip.models.patch_embedding import patchify_call, use_matmul_patch_embedding


def _conv(patch, filters=5, use_bias=True):
    conv = keras.layers.Conv2D(filters, patch, strides=patch, use_bias=use_bias)
    conv.build((None, 12, 12, 3))
    rng = np.random.default_rng(0)
    conv.kernel.assign(rng.normal(size=conv.kernel.shape).astype("float32"))
    if use_bias:
        conv.bias.assign(rng.normal(size=conv.bias.shape).astype("float32"))
    return conv


@pytest.mark.parametrize("patch,size", [(4, 12), ((3, 4), 12), (5, 12)])  # 5: a remainder is dropped
def test_patchify_equals_the_convolution(patch, size):
    conv = _conv(patch)
    x = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(conv(x))
    got = keras.ops.convert_to_numpy(patchify_call(conv)(keras.ops.convert_to_tensor(x)))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The same numbers by hand: patch (i, j) of image b dotted with the kernel.
    p_h, p_w = conv.kernel_size
    kernel = keras.ops.convert_to_numpy(conv.kernel).reshape(-1, 5)
    bias = keras.ops.convert_to_numpy(conv.bias)
    manual = x[1, p_h : 2 * p_h, 0:p_w, :].reshape(-1) @ kernel + bias
    np.testing.assert_allclose(got[1, 1, 0], manual, rtol=1e-5, atol=1e-5)


def test_kernel_gradient_equals_the_convolutions():
    conv = _conv(4, use_bias=False)
    x = np.random.default_rng(2).normal(size=(2, 12, 12, 3)).astype("float32")
    weights = np.random.default_rng(3).normal(size=(2, 3, 3, 5)).astype("float32")
    # d/dK sum(w * out) = sum over patches of patch (x) w: computed in NumPy.
    patches = x.reshape(2, 3, 4, 3, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(18, 48)
    want = (patches.T @ weights.reshape(18, 5)).reshape(4, 4, 3, 5)
    call = patchify_call(conv)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        got = jax.grad(lambda k: (_with_kernel(conv, k, call, x) * weights).sum())(conv.kernel.value)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = call(tf.constant(x))
            loss = tf.reduce_sum(out * weights)
        got = tape.gradient(loss, conv.kernel.value)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)
    else:
        import torch

        conv.kernel.value.grad = None
        loss = (call(torch.as_tensor(x)) * torch.as_tensor(weights)).sum()
        loss.backward()
        np.testing.assert_allclose(conv.kernel.value.grad.numpy(), want, rtol=1e-4, atol=1e-4)


def _with_kernel(conv, kernel, call, x):
    from keras import StatelessScope

    with StatelessScope(state_mapping=[(conv.kernel, kernel)]):
        return call(x)


def test_clip_on_jax_embeds_patches_by_matmul():
    from tests.models.conftest import tiny_clip

    model = tiny_clip()
    conv = model.image_encoder.embedding.patch_embedding
    assert ("call" in vars(conv)) == (keras.backend.backend() == "jax")
    call = vars(conv).get("call")
    use_matmul_patch_embedding(model.image_encoder)  # a second time changes nothing
    assert vars(conv).get("call") is call


def test_other_convolutions_are_refused_with_the_reason():
    conv = keras.layers.Conv2D(4, 3, strides=1)
    conv.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match="strides equal to its kernel size"):
        patchify_call(conv)
