"""InfoNCE (CLIP) and decoupled InfoNCE (DCL) against NumPy references."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_clip.losses import contrastive_logits
from keras_clip.losses import infonce


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def reference_infonce(x, y, scale, decoupled=False):
    """Straightforward float64 InfoNCE / DCL."""
    logits = scale * np.asarray(x, "float64") @ np.asarray(y, "float64").T
    n = logits.shape[0]

    def direction(lg):
        if decoupled:
            off = np.where(np.eye(n, dtype=bool), -np.inf, lg)
            return np.mean(_logsumexp(off, 1) - np.diag(lg))
        return np.mean(_logsumexp(lg, 1) - np.diag(lg))

    return 0.5 * (direction(logits) + direction(logits.T))


# Module-level losses (the JAX test helpers cache their compilation).
def standard(x, y, scale):
    return infonce(x, y, scale)


def decoupled(x, y, scale):
    return infonce(x, y, scale, decoupled=True)


LOSSES = {False: standard, True: decoupled}


@pytest.mark.parametrize("dcl", [False, True])
def test_matches_reference(unit_rows, rng, evaluate, dcl):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    got = evaluate(LOSSES[dcl], x, y, 7.3)
    want = reference_infonce(x, y, 7.3, decoupled=dcl)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dcl", [False, True])
def test_gradients_match_finite_differences(
    unit_rows, rng, backend_grad, numeric_grad, dcl
):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    s = np.float32(4.0)
    value, grads = backend_grad(LOSSES[dcl], [x, y, s])
    np.testing.assert_allclose(
        value, reference_infonce(x, y, s, dcl), rtol=1e-5
    )
    want = numeric_grad(
        lambda a, b, c: reference_infonce(a, b, c, decoupled=dcl), [x, y, s]
    )
    for g, w in zip(grads, want):  # image, text embeddings and the scale
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("n,scale", [(6, 1.0), (6, 30.0), (8, 3.0)])
def test_aligned_orthonormal_closed_form(evaluate, n, scale):
    e = np.eye(n, dtype="float32")
    np.testing.assert_allclose(
        evaluate(standard, e, e, scale),
        np.log1p((n - 1) * np.exp(-scale)),
        rtol=1e-4,
    )


def test_aligned_orthonormal_s10_n8_number(evaluate):
    e = np.eye(8, dtype="float32")
    np.testing.assert_allclose(evaluate(standard, e, e, 10.0), 3.1775e-4, rtol=1e-4)


@pytest.mark.parametrize("scale", [0.5, 10.0, 100.0])
def test_identical_embeddings_give_log_n(evaluate, scale):
    e = np.tile(np.array([[0.6, 0.8, 0, 0, 0, 0]], "float32"), (6, 1))
    np.testing.assert_allclose(evaluate(standard, e, e, scale), np.log(6), rtol=1e-5)


def test_equals_mean_of_directional_cross_entropies(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    logits = contrastive_logits(x, y, 5.0)
    labels = np.arange(6)
    ce = keras.losses.sparse_categorical_crossentropy
    i2t = ops.convert_to_numpy(ce(labels, logits, from_logits=True))
    t2i = ops.convert_to_numpy(
        ce(labels, ops.transpose(logits), from_logits=True)
    )
    np.testing.assert_allclose(
        evaluate(standard, x, y, 5.0), 0.5 * (i2t.mean() + t2i.mean()), rtol=1e-5
    )


@pytest.mark.parametrize("n,scale", [(6, 1.0), (6, 10.0), (8, 10.0)])
def test_decoupled_aligned_orthonormal_closed_form(evaluate, n, scale):
    e = np.eye(n, dtype="float32")
    np.testing.assert_allclose(
        evaluate(decoupled, e, e, scale), -scale + np.log(n - 1), rtol=1e-5
    )


def test_batch_of_one(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 1, 6), unit_rows(rng, 1, 6)
    assert evaluate(standard, x, y, 50.0) == 0.0  # no negative, no signal
    with pytest.raises(ValueError, match="batch of 1"):
        infonce(x, y, 50.0, decoupled=True)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("dcl", [False, True])
def test_low_precision_inputs_at_scale_100(unit_rows, rng, backend_grad, rounded, low_precision_rtol, dtype, dcl):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    value, grads = backend_grad(LOSSES[dcl], [x, y], dtype, args=(100.0,))
    assert all(np.all(np.isfinite(g)) for g in grads)
    # The reference on the inputs as the loss sees them (rounded to `dtype`).
    want = reference_infonce(rounded(x, dtype), rounded(y, dtype), 100.0, dcl)
    np.testing.assert_allclose(value, want, rtol=low_precision_rtol)


def test_mismatched_batch_is_an_error(unit_rows, rng):
    with pytest.raises(ValueError, match="batch 4 but `text_embeddings` has batch 3"):
        infonce(unit_rows(rng, 4, 2), unit_rows(rng, 3, 2), 1.0)


def test_non_scalar_scale_is_an_error(unit_rows, rng):
    x = unit_rows(rng, 6, 6)
    with pytest.raises(ValueError, match="logit_scale"):
        infonce(x, x, np.ones(3, "float32"))


def test_contrastive_logits():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], "float32")
    b = np.array([[0.0, 1.0], [1.0, 0.0]], "float32")
    got = ops.convert_to_numpy(contrastive_logits(a, b, 2.0))
    np.testing.assert_allclose(got, 2.0 * a @ b.T, rtol=1e-6)
    assert got.shape == (3, 2)
