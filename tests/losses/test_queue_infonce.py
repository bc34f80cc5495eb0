"""MoCo-style queue InfoNCE against a NumPy reference and closed forms."""

import numpy as np
import pytest

from keras_clip.losses import queue_infonce


def reference_queue(q, k, queue, scale, valid=None, batch_negatives=False):
    q, k, queue = (np.asarray(a, "float64") for a in (q, k, queue))
    if valid is not None:
        queue = queue[np.asarray(valid, bool)]
    total = 0.0
    for i in range(len(q)):
        logits = [scale * q[i] @ k[i]] + [scale * q[i] @ n for n in queue]
        if batch_negatives:
            logits += [scale * q[i] @ k[j] for j in range(len(k)) if j != i]
        logits = np.array(logits)
        m = logits.max()
        total += m + np.log(np.exp(logits - m).sum()) - logits[0]
    return total / len(q)


# Module-level losses (the JAX test helpers cache their compilation).
def queue_only(q, k, queue, valid, scale):
    return queue_infonce(q, k, queue, valid, scale)


def with_batch(q, k, queue, valid, scale):
    return queue_infonce(q, k, queue, valid, scale, include_batch_negatives=True)


LOSSES = {False: queue_only, True: with_batch}
VALID = np.array([1, 1, 0, 1, 1, 0, 1, 1], bool)


def _inputs(unit_rows, rng):
    return unit_rows(rng, 6, 6), unit_rows(rng, 6, 6), unit_rows(rng, 8, 6)


@pytest.mark.parametrize("batch_negatives", [False, True])
def test_matches_reference(unit_rows, rng, evaluate, batch_negatives):
    q, k, queue = _inputs(unit_rows, rng)
    got = evaluate(LOSSES[batch_negatives], q, k, queue, VALID, 8.0)
    want = reference_queue(q, k, queue, 8.0, VALID, batch_negatives)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("batch_negatives", [False, True])
def test_gradients_flow_to_queries_only(
    unit_rows, rng, backend_grad, numeric_grad, batch_negatives
):
    q, k, queue = _inputs(unit_rows, rng)
    value, (gq, gk, gqueue) = backend_grad(
        LOSSES[batch_negatives], [q, k, queue], args=(VALID, 3.0)
    )
    (want,) = numeric_grad(
        lambda a: reference_queue(a, k, queue, 3.0, VALID, batch_negatives), [q]
    )
    np.testing.assert_allclose(gq, want, rtol=1e-3, atol=1e-5)
    assert np.all(gk == 0.0) and np.all(gqueue == 0.0)  # stop_gradient


@pytest.mark.parametrize("tau,k", [(0.07, 16), (0.5, 3)])
def test_orthogonal_queue_closed_form(evaluate, tau, k):
    basis = np.eye(k + 2, dtype="float32")
    q = basis[:2]  # q . k+ = 1
    queue = basis[2:]  # K entries orthogonal to every query
    got = evaluate(lambda: queue_infonce(q, q, queue, logit_scale=1.0 / tau))
    np.testing.assert_allclose(got, np.log1p(k * np.exp(-1.0 / tau)), rtol=1e-5)


def test_unfilled_slots_change_nothing(unit_rows, rng, backend_grad):
    q, k, queue = _inputs(unit_rows, rng)
    garbage = queue.copy()
    garbage[~VALID] = rng.normal(size=(int((~VALID).sum()), 6)) * 1e4
    v_masked, (g_masked,) = backend_grad(
        lambda a: queue_infonce(a, k, garbage, VALID, 20.0), [q]
    )
    v_removed, (g_removed,) = backend_grad(
        lambda a: queue_infonce(a, k, queue[VALID], None, 20.0), [q]
    )
    np.testing.assert_allclose(v_masked, v_removed, rtol=1e-6)
    np.testing.assert_allclose(g_masked, g_removed, rtol=1e-5, atol=1e-7)
    # A 0/1 mask works like a bool one.
    got = queue_infonce(q, k, garbage, VALID.astype("int32"), 20.0)
    np.testing.assert_allclose(float(got), v_removed, rtol=1e-6)


def test_no_negative_at_all_is_zero(unit_rows, rng, evaluate):
    q, _, queue = _inputs(unit_rows, rng)
    empty = np.zeros((0, 6), "float32")
    assert evaluate(lambda: queue_infonce(q, q, empty, logit_scale=10.0)) == 0.0
    assert evaluate(queue_only, q, q, queue, np.zeros(8, bool), 10.0) == 0.0


def test_default_scale_is_moco_temperature(unit_rows, rng, evaluate):
    q, _, queue = _inputs(unit_rows, rng)
    np.testing.assert_allclose(
        evaluate(lambda: queue_infonce(q, q, queue)),
        reference_queue(q, q, queue, 1 / 0.07),
        rtol=1e-5,
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_at_scale_100(unit_rows, rng, backend_grad, rounded, low_precision_rtol, dtype):
    q, k, queue = _inputs(unit_rows, rng)
    value, grads = backend_grad(
        with_batch, [q, k, queue], dtype, args=(VALID, 100.0)
    )
    assert all(np.isfinite(g).all() for g in grads)
    want = reference_queue(
        rounded(q, dtype), rounded(k, dtype), rounded(queue, dtype), 100.0, VALID, batch_negatives=True
    )
    np.testing.assert_allclose(value, want, rtol=low_precision_rtol)
