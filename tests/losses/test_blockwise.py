"""Blockwise InfoNCE / SigLIP: equal to the dense losses and to NumPy,
values and gradients (embeddings, scale, bias), uneven last strip, extreme
scale and half-precision inputs. Big-B memory is in benchmarks/."""

import keras
import numpy as np
import pytest

from keras_clip import losses
from keras_clip.losses.blockwise import BlockwiseInfoNCE
from keras_clip.losses.blockwise import BlockwiseSigLIP
from keras_clip.losses.blockwise import blockwise_infonce
from keras_clip.losses.blockwise import blockwise_siglip

B, D, BLOCK = 37, 16, 8  # 5 strips, the last one 5 rows


# ------------------------------------------------- NumPy float64 references
def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(a - m).sum(axis=axis))


def ref_infonce(x, y, s):
    """(loss, dx, dy, ds) of symmetric InfoNCE, float64, closed form."""
    x, y, s = np.float64(x), np.float64(y), np.float64(s)
    n = len(x)
    cos = x @ y.T
    logits = s * cos
    d = np.diag(logits)
    loss = 0.5 * (np.mean(_lse(logits, 1) - d) + np.mean(_lse(logits, 0) - d))
    p = np.exp(logits - _lse(logits, 1)[:, None])
    q = np.exp(logits - _lse(logits, 0)[None, :])
    g = (p + q) / (2 * n) - np.eye(n) / n  # dL/dlogits
    return loss, s * g @ y, s * g.T @ x, np.sum(g * cos)


def ref_siglip(x, y, t, b):
    x, y, t, b = np.float64(x), np.float64(y), np.float64(t), np.float64(b)
    n = len(x)
    cos = x @ y.T
    logits = t * cos + b
    z = 2 * np.eye(n) - 1
    loss = np.sum(np.logaddexp(0.0, -z * logits)) / n
    g = -z / (1.0 + np.exp(z * logits)) / n  # -z sigmoid(-z l) / n
    return loss, t * g @ y, t * g.T @ x, np.sum(g * cos), np.sum(g)


# --------------------------- module-level functions (JAX compiles each once)
def block_infonce(x, y, s):
    return blockwise_infonce(x, y, s, block_size=BLOCK)


def dense_infonce(x, y, s):
    return losses.infonce(x, y, s)


def block_siglip(x, y, t, b):
    return blockwise_siglip(x, y, t, b, block_size=BLOCK)


def dense_siglip(x, y, t, b):
    return losses.siglip(x, y, t, b)


def block_infonce_one_strip(x, y, s):  # block larger than the batch
    return blockwise_infonce(x, y, s, block_size=64)


def block_siglip_exact(x, y, t, b):  # block divides the batch (no padding)
    return blockwise_siglip(x, y, t, b, block_size=4)


def _pair(rng, unit_rows, n=B):
    return unit_rows(rng, n, D), unit_rows(rng, n, D)


def test_infonce_value_and_gradients(rng, unit_rows, backend_grad):
    x, y = _pair(rng, unit_rows)
    s = np.float32(14.3)
    value, grads = backend_grad(block_infonce, [x, y, s])
    dense_value, dense_grads = backend_grad(dense_infonce, [x, y, s])
    want = ref_infonce(x, y, s)
    np.testing.assert_allclose(value, want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, dense_value, rtol=1e-5, atol=1e-5)
    for g, dg, w in zip(grads, dense_grads, want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g, dg, rtol=1e-5, atol=1e-5)


def test_siglip_value_and_gradients(rng, unit_rows, backend_grad):
    x, y = _pair(rng, unit_rows)
    t, b = np.float32(10.0), np.float32(-6.0)
    value, grads = backend_grad(block_siglip, [x, y, t, b])
    dense_value, dense_grads = backend_grad(dense_siglip, [x, y, t, b])
    want = ref_siglip(x, y, t, b)
    np.testing.assert_allclose(value, want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, dense_value, rtol=1e-5, atol=1e-5)
    for g, dg, w in zip(grads, dense_grads, want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g, dg, rtol=1e-5, atol=1e-5)


def test_block_larger_than_batch_and_exact_division(rng, unit_rows, backend_grad):
    x, y = _pair(rng, unit_rows, n=12)
    value, grads = backend_grad(block_infonce_one_strip, [x, y, np.float32(5.0)])
    want = ref_infonce(x, y, 5.0)
    np.testing.assert_allclose(value, want[0], rtol=1e-5, atol=1e-5)
    for g, w in zip(grads, want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    t, b = np.float32(3.0), np.float32(-1.0)
    value, grads = backend_grad(block_siglip_exact, [x, y, t, b])
    want = ref_siglip(x, y, t, b)
    np.testing.assert_allclose(value, want[0], rtol=1e-5, atol=1e-5)
    for g, w in zip(grads, want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_finite_at_extreme_scale(rng, unit_rows, backend_grad):
    x, y = _pair(rng, unit_rows)
    x[3] = y[3]  # a perfect pair: margin 100 against every negative
    value, grads = backend_grad(block_infonce, [x, y, np.float32(100.0)])
    want = ref_infonce(x, y, 100.0)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, want[0], rtol=1e-5)
    for g in grads:
        assert np.all(np.isfinite(g))
    value, grads = backend_grad(
        block_siglip, [x, y, np.float32(100.0), np.float32(-10.0)]
    )
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs(rng, unit_rows, backend_grad, dtype):
    x, y = _pair(rng, unit_rows)
    value, grads = backend_grad(block_infonce, [x, y, np.float32(20.0)], dtype=dtype)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_allclose(value, ref_infonce(x, y, 20.0)[0], rtol=2e-2)
    value, grads = backend_grad(
        block_siglip, [x, y, np.float32(10.0), np.float32(-10.0)], dtype=dtype
    )
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_wrappers_match_dense_classes_and_round_trip(rng, unit_rows):
    x, y = _pair(rng, unit_rows, n=10)
    y_pred = {
        "image_embeddings": x,
        "text_embeddings": y,
        "logit_scale": np.float32(7.0),
        "logit_bias": np.float32(-3.0),
    }
    for blockwise, dense in (
        (BlockwiseInfoNCE(block_size=3), losses.InfoNCE()),
        (BlockwiseSigLIP(block_size=3), losses.SigLIP()),
    ):
        got = float(blockwise(None, y_pred))
        np.testing.assert_allclose(got, float(dense(None, y_pred)), rtol=1e-5)
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(blockwise)
        )
        assert type(restored) is type(blockwise) and restored.block_size == 3
    assert isinstance(losses.get("blockwise_infonce"), BlockwiseInfoNCE)
    assert losses.get({"name": "blockwise-siglip", "block_size": 64}).block_size == 64


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_block_size_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        BlockwiseInfoNCE(block_size=bad)
