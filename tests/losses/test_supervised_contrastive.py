"""Supervised contrastive losses (SupCon L_out) against NumPy references."""

import numpy as np
import pytest

from keras_clip.losses import infonce
from keras_clip.losses import nt_xent
from keras_clip.losses import supcon
from keras_clip.losses import supervised_contrastive


def _log_softmax(a):
    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


def _mean_over_positives(log_probs, positives):
    rows = []
    for lp, pos in zip(log_probs, positives):
        if pos.any():
            rows.append(-lp[pos].mean())
    return float(np.mean(rows)) if rows else 0.0


def reference_cross_modal(x, y, scale, labels):
    """Float64 loops: positives = same class (label >= 0) or the diagonal."""
    logits = scale * np.asarray(x, "float64") @ np.asarray(y, "float64").T
    n = len(labels)
    pos = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(n):
            pos[i, j] = i == j or (labels[i] >= 0 and labels[i] == labels[j])
    i2t = _mean_over_positives(_log_softmax(logits), pos)
    t2i = _mean_over_positives(_log_softmax(logits.T), pos.T)
    return 0.5 * (i2t + t2i)


def reference_supcon(f, labels, tau):
    """Float64 loops: self removed from the row, positives = same label."""
    f = np.asarray(f, "float64")
    n = len(labels)
    total, rows = 0.0, 0
    for i in range(n):
        others = [k for k in range(n) if k != i]
        logits = np.array([f[i] @ f[k] / tau for k in others])
        log_z = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
        positives = [
            j for j, k in enumerate(others)
            if labels[i] >= 0 and labels[k] == labels[i]
        ]
        if positives:
            total += -np.mean(logits[positives] - log_z)
            rows += 1
    return total / rows if rows else 0.0


# Module-level losses (the JAX test helpers cache their compilation).
def cross_modal(x, y, scale, labels):
    return supervised_contrastive(x, y, scale, labels)


def single_modality(f, tau, labels):
    return supcon(f, labels, tau)


LABELS = np.array([0, 1, 0, -1, 1, 0])


def test_cross_modal_matches_reference(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    np.testing.assert_allclose(
        evaluate(cross_modal, x, y, 6.0, LABELS),
        reference_cross_modal(x, y, 6.0, LABELS),
        rtol=1e-5,
    )


def test_cross_modal_gradients(unit_rows, rng, backend_grad, numeric_grad):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    s = np.float32(3.0)
    value, grads = backend_grad(cross_modal, [x, y, s], args=(LABELS,))
    want = numeric_grad(
        lambda a, b, c: reference_cross_modal(a, b, c, LABELS), [x, y, s]
    )
    np.testing.assert_allclose(
        value, reference_cross_modal(x, y, s, LABELS), rtol=1e-5
    )
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    "labels", [np.arange(6), -np.ones(6, "int64")], ids=["distinct", "none"]
)
def test_cross_modal_without_shared_classes_is_infonce(
    unit_rows, rng, evaluate, labels
):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    np.testing.assert_allclose(
        evaluate(cross_modal, x, y, 4.0, labels),
        evaluate(lambda: infonce(x, y, 4.0)),
        rtol=1e-6,
    )


def test_cross_modal_labels_as_column_and_float(unit_rows, rng):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    got = supervised_contrastive(x, y, 4.0, LABELS.astype("float32")[:, None])
    np.testing.assert_allclose(
        float(got), reference_cross_modal(x, y, 4.0, LABELS), rtol=1e-5
    )


def test_cross_modal_batch_of_one(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 1, 6), unit_rows(rng, 1, 6)
    assert evaluate(cross_modal, x, y, 30.0, np.array([3])) == 0.0


def test_supcon_matches_reference(unit_rows, rng, evaluate):
    f = unit_rows(rng, 12, 6)
    labels = np.concatenate([LABELS, LABELS])
    np.testing.assert_allclose(
        evaluate(single_modality, f, 0.3, labels),
        reference_supcon(f, labels, 0.3),
        rtol=1e-5,
    )


def test_supcon_gradients(unit_rows, rng, backend_grad, numeric_grad):
    f = unit_rows(rng, 12, 6)
    labels = np.concatenate([LABELS, LABELS])
    tau = np.float32(0.5)
    value, grads = backend_grad(single_modality, [f, tau], args=(labels,))
    want = numeric_grad(lambda a, t: reference_supcon(a, labels, t), [f, tau])
    np.testing.assert_allclose(value, reference_supcon(f, labels, tau), rtol=1e-5)
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_supcon_orthonormal_clusters_closed_form(evaluate, tau):
    # B = 6 samples, two views each: N = 12 features. Classes 0, 0, 1, 2, 2,
    # 3 give clusters of m = 4, 2, 4, 2 among the 12 views; every sample of
    # class c is e_c. Anchor i: m_i - 1 positives at similarity 1, N - m_i
    # negatives at 0, so -log p is the same for every positive:
    # log((m_i - 1) e^(1/tau) + (N - m_i)) - 1/tau.
    classes = np.array([0, 0, 1, 2, 2, 3])
    labels = np.concatenate([classes, classes])
    features = np.eye(6, dtype="float32")[labels]
    sizes = np.array([np.sum(labels == c) for c in labels])
    n = len(labels)
    want = np.mean(np.log((sizes - 1) + (n - sizes) * np.exp(-1.0 / tau)))
    np.testing.assert_allclose(
        evaluate(single_modality, features, tau, labels), want, rtol=1e-5
    )


def test_supcon_with_view_labels_is_nt_xent(unit_rows, rng, evaluate):
    v1, v2 = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    labels = np.concatenate([np.arange(6), np.arange(6)])
    np.testing.assert_allclose(
        evaluate(single_modality, np.concatenate([v1, v2]), 0.2, labels),
        evaluate(lambda: nt_xent(v1, v2, 0.2)),
        rtol=1e-5,
    )


def test_supcon_rows_without_positive_are_left_out(
    unit_rows, rng, evaluate, backend_grad
):
    f = unit_rows(rng, 12, 6)
    # 1, 3, 4 and -1 (no class) have no partner: those anchors are skipped.
    labels = np.array([0, 0, 1, -1, 2, 2, 3, -1, 5, 5, 4, 6])
    got = evaluate(single_modality, f, 0.3, labels)
    np.testing.assert_allclose(got, reference_supcon(f, labels, 0.3), rtol=1e-5)
    # Nobody has a positive: exactly 0 with a zero gradient, never NaN.
    alone = np.array([0, 1, 2, 3, -1, -1, 4, 5, 6, 7, 8, 9])
    value, (g, _) = backend_grad(
        single_modality, [f, np.float32(0.1)], args=(alone,)
    )
    assert value == 0.0 and np.all(g == 0.0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_at_scale_100(unit_rows, rng, backend_grad, rounded, low_precision_rtol, dtype):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    value, grads = backend_grad(cross_modal, [x, y], dtype, args=(100.0, LABELS))
    assert all(np.isfinite(g).all() for g in grads)
    want = reference_cross_modal(rounded(x, dtype), rounded(y, dtype), 100.0, LABELS)
    np.testing.assert_allclose(value, want, rtol=low_precision_rtol)
    f = np.concatenate([x, y])
    labels = np.concatenate([LABELS, LABELS])
    value, (g,) = backend_grad(single_modality, [f], dtype, args=(0.01, labels))
    assert np.isfinite(g).all()
    np.testing.assert_allclose(value, reference_supcon(rounded(f, dtype), labels, 0.01), rtol=low_precision_rtol)


def test_label_batch_mismatch_is_an_error(unit_rows, rng):
    x = unit_rows(rng, 6, 6)
    with pytest.raises(ValueError, match="batch"):
        supervised_contrastive(x, x, 1.0, np.arange(5))
