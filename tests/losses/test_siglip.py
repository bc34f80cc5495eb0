"""SigLIP sigmoid loss against a NumPy reference and closed forms."""

import numpy as np
import pytest

from keras_clip.losses import siglip


def _log_sigmoid(a):
    return -np.logaddexp(0.0, -a)


def _softplus(a):
    return np.logaddexp(0.0, a)


def reference_siglip(x, y, t, b):
    logits = t * np.asarray(x, "float64") @ np.asarray(y, "float64").T + b
    n = len(logits)
    z = 2 * np.eye(n) - 1
    return -np.sum(_log_sigmoid(z * logits)) / n


def loss(x, y, t, b):  # module level: JAX compiles it once per shape
    return siglip(x, y, t, b)


def test_matches_reference(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    np.testing.assert_allclose(
        evaluate(loss, x, y, 10.0, -10.0),
        reference_siglip(x, y, 10.0, -10.0),
        rtol=1e-5,
    )


def test_gradients_including_scale_and_bias(
    unit_rows, rng, backend_grad, numeric_grad
):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    t, b = np.float32(3.0), np.float32(-2.0)
    value, grads = backend_grad(loss, [x, y, t, b])
    want = numeric_grad(reference_siglip, [x, y, t, b])
    np.testing.assert_allclose(value, reference_siglip(x, y, t, b), rtol=1e-5)
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("t,b", [(10.0, -10.0), (5.0, -2.0), (100.0, -3.0)])
def test_identical_embeddings_closed_form(evaluate, t, b):
    n = 6
    e = np.tile(np.eye(6, dtype="float32")[1:2], (n, 1))  # x.y = 1
    want = _softplus(-(t + b)) + (n - 1) * _softplus(t + b)
    np.testing.assert_allclose(evaluate(loss, e, e, t, b), want, rtol=1e-5)


def test_identical_embeddings_at_t10_b_minus10_is_n_log2(evaluate):
    e = np.tile(np.eye(6, dtype="float32")[3:4], (6, 1))
    np.testing.assert_allclose(
        evaluate(loss, e, e, 10.0, -10.0), 6 * np.log(2.0), rtol=1e-6
    )


def test_batch_of_one_keeps_only_the_positive(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 1, 6), unit_rows(rng, 1, 6)
    want = _softplus(-(10.0 * float(x[0] @ y[0]) - 10.0))
    np.testing.assert_allclose(
        evaluate(loss, x, y, 10.0, -10.0), want, rtol=1e-5
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_at_scale_100(unit_rows, rng, backend_grad, rounded, low_precision_rtol, dtype):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    value, grads = backend_grad(loss, [x, y], dtype, args=(100.0, -10.0))
    assert all(np.isfinite(g).all() for g in grads)
    want = reference_siglip(rounded(x, dtype), rounded(y, dtype), 100.0, -10.0)
    np.testing.assert_allclose(value, want, rtol=low_precision_rtol)
