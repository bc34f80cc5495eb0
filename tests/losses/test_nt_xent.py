"""SimCLR NT-Xent against a NumPy reference and closed forms."""

import numpy as np
import pytest

from keras_clip.losses import nt_xent


def reference_nt_xent(v1, v2, tau):
    z = np.concatenate([v1, v2]).astype("float64")
    n2, b = len(z), len(v1)
    total = 0.0
    for i in range(n2):
        partner = (i + b) % n2
        others = [k for k in range(n2) if k != i]
        logits = np.array([z[i] @ z[k] / tau for k in others])
        m = logits.max()
        log_z = m + np.log(np.exp(logits - m).sum())
        total += log_z - z[i] @ z[partner] / tau
    return total / n2


def loss(v1, v2, tau):  # module level: JAX compiles it once per shape
    return nt_xent(v1, v2, tau)


def test_matches_reference(unit_rows, rng, evaluate):
    v1, v2 = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    np.testing.assert_allclose(
        evaluate(loss, v1, v2, 0.2), reference_nt_xent(v1, v2, 0.2), rtol=1e-5
    )


def test_gradients(unit_rows, rng, backend_grad, numeric_grad):
    v1, v2 = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    tau = np.float32(0.5)
    value, grads = backend_grad(loss, [v1, v2, tau])
    want = numeric_grad(reference_nt_xent, [v1, v2, tau])
    np.testing.assert_allclose(value, reference_nt_xent(v1, v2, tau), rtol=1e-5)
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_identical_embeddings_give_log_2n_minus_1(evaluate, tau):
    e = np.tile(np.array([[0.6, 0, 0.8, 0, 0, 0]], "float32"), (6, 1))
    np.testing.assert_allclose(evaluate(loss, e, e, tau), np.log(11), rtol=1e-5)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_perfect_views_closed_form(evaluate, tau):
    e = np.eye(6, dtype="float32")
    want = np.log1p(2 * 5 * np.exp(-1.0 / tau))
    np.testing.assert_allclose(evaluate(loss, e, e, tau), want, rtol=1e-5)


def test_batch_of_one_is_zero(unit_rows, rng, evaluate):
    v1, v2 = unit_rows(rng, 1, 6), unit_rows(rng, 1, 6)
    assert evaluate(loss, v1, v2, 0.1) == 0.0  # the only other is the positive


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_at_scale_100(unit_rows, rng, backend_grad, rounded, low_precision_rtol, dtype):
    v1, v2 = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    value, grads = backend_grad(loss, [v1, v2], dtype, args=(0.01,))
    assert all(np.isfinite(g).all() for g in grads)
    want = reference_nt_xent(rounded(v1, dtype), rounded(v2, dtype), 0.01)
    np.testing.assert_allclose(value, want, rtol=low_precision_rtol)


def test_mismatched_views_are_an_error(unit_rows, rng):
    with pytest.raises(ValueError, match="view1"):
        nt_xent(unit_rows(rng, 4, 6), unit_rows(rng, 5, 6))
