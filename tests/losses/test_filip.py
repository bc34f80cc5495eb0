"""FILIP token-level contrast against NumPy references."""

import importlib

import numpy as np
import pytest

from keras_clip.losses import filip
from keras_clip.losses import filip_similarity
from keras_clip.losses import infonce

# `keras_clip.losses.filip` is the function; the module is reached this way.
filip_impl = importlib.import_module("keras_clip.losses.filip_blocks")  # the chunked similarity


def reference_similarity(x, y, x_mask=None, y_mask=None):
    """Float64 loops over pairs: mean over valid p of max over valid q."""
    x, y = np.asarray(x, "float64"), np.asarray(y, "float64")
    ba, bb = len(x), len(y)
    x_mask = np.ones(x.shape[:2], bool) if x_mask is None else x_mask
    y_mask = np.ones(y.shape[:2], bool) if y_mask is None else y_mask
    i2t, t2i = np.zeros((ba, bb)), np.zeros((bb, ba))
    for a in range(ba):
        for b in range(bb):
            s = x[a][x_mask[a]] @ y[b][y_mask[b]].T  # (valid p, valid q)
            if s.size:
                i2t[a, b] = s.max(axis=1).mean()
                t2i[b, a] = s.max(axis=0).mean()
    return i2t, t2i


def _ce_diag(logits):
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return np.mean(lse - np.diag(logits))


def reference_filip(x, y, scale, x_mask=None, y_mask=None):
    i2t, t2i = reference_similarity(x, y, x_mask, y_mask)
    return 0.5 * (_ce_diag(scale * i2t) + _ce_diag(scale * t2i))


# Module-level loss functions: the JAX test helpers cache their compilation.
def filip_chunk2(x, y, scale, x_mask, y_mask):
    return filip(x, y, scale, x_mask, y_mask, chunk_size=2)


def filip_default(x, y, scale, x_mask, y_mask):  # chunk 32: one chunk here
    return filip(x, y, scale, x_mask, y_mask)


def similarity_chunk2(x, y, x_mask, y_mask):
    return filip_similarity(x, y, x_mask, y_mask, chunk_size=2)


def similarity(x, y, x_mask, y_mask):
    return filip_similarity(x, y, x_mask, y_mask)


def _masks(rng, b, n):
    mask = rng.random((b, n)) < 0.6
    mask[:, 0] = True  # at least one valid token per sequence
    return mask


def _tokens(unit_rows, rng):
    """A batch of 5: with chunk_size=2, three chunks, the last one padded."""
    x, y = unit_rows(rng, 5, 3, 6), unit_rows(rng, 5, 4, 6)
    return x, y, _masks(rng, 5, 3), _masks(rng, 5, 4)


def test_similarity_is_chunked_and_matches_reference(
    unit_rows, rng, monkeypatch, compute
):
    # The score blocks are (B, Ni, chunk, Nt), never (B, Ni, B, Nt): with a
    # batch of 5 and chunk_size=2, three chunks (the last one padded).
    seen = []
    original = filip_impl._chunk_scores

    def spy(rows, cols_tokens, cols_mask):
        seen.append(tuple(cols_tokens.shape))
        return original(rows, cols_tokens, cols_mask)

    monkeypatch.setattr(filip_impl, "_chunk_scores", spy)
    x, y, xm, ym = _tokens(unit_rows, rng)
    i2t, t2i = compute(
        lambda *a: filip_similarity(*a, chunk_size=2), x, y, xm, ym
    )
    assert seen and all(shape == (2, 4, 6 + 2) for shape in seen)
    want_i2t, want_t2i = reference_similarity(x, y, xm, ym)
    np.testing.assert_allclose(i2t, want_i2t, atol=1e-6)
    np.testing.assert_allclose(t2i, want_t2i, atol=1e-6)


def test_similarity_of_different_batch_sizes(unit_rows, rng, compute):
    x, y = unit_rows(rng, 3, 3, 6), unit_rows(rng, 5, 4, 6)
    xm, ym = np.ones((3, 3), bool), np.ones((5, 4), bool)
    i2t, t2i = compute(similarity_chunk2, x, y, xm, ym)
    want_i2t, want_t2i = reference_similarity(x, y)
    assert i2t.shape == (3, 5) and t2i.shape == (5, 3)
    np.testing.assert_allclose(i2t, want_i2t, atol=1e-6)
    np.testing.assert_allclose(t2i, want_t2i, atol=1e-6)


def test_loss_and_gradients_match_reference(
    unit_rows, rng, backend_grad, numeric_grad
):
    x, y, xm, ym = _tokens(unit_rows, rng)
    # Masked-out tokens hold garbage (huge values, a NaN): no effect at all.
    x[~xm] = 1e3 * rng.normal(size=(int((~xm).sum()), 6))
    y[~ym] = 1e3 * rng.normal(size=(int((~ym).sum()), 6))
    a, p = np.argwhere(~xm)[0]
    x[a, p, 0] = np.nan  # (x[~xm] is a copy: writing into it changed nothing)
    assert np.isnan(x).sum() == 1
    s = np.float32(4.0)
    value, grads = backend_grad(filip_chunk2, [x, y, s], args=(xm, ym))
    np.testing.assert_allclose(value, reference_filip(x, y, s, xm, ym), rtol=1e-5)
    want = numeric_grad(
        lambda a, b, c: reference_filip(a, b, c, xm, ym), [x, y, s]
    )
    for g, w in zip(grads, want):  # d/d image tokens, text tokens, scale
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)
    assert np.all(grads[0][~xm] == 0.0) and np.all(grads[1][~ym] == 0.0)


def test_sequence_without_valid_token(
    unit_rows, rng, backend_grad, numeric_grad, compute
):
    x, y, xm, ym = _tokens(unit_rows, rng)
    ym[2] = False  # text 2 is empty: similarity 0 with every image
    i2t, t2i = compute(similarity_chunk2, x, y, xm, ym)
    assert np.all(i2t[:, 2] == 0.0) and np.all(t2i[2] == 0.0)
    s = np.float32(9.0)
    value, grads = backend_grad(filip_chunk2, [x, y, s], args=(xm, ym))
    np.testing.assert_allclose(value, reference_filip(x, y, s, xm, ym), rtol=1e-5)
    assert all(np.isfinite(g).all() for g in grads)
    assert np.all(grads[1][2] == 0.0)
    want = numeric_grad(lambda a: reference_filip(a, y, s, xm, ym), [x])
    np.testing.assert_allclose(grads[0], want[0], rtol=1e-3, atol=1e-5)


def test_padding_tokens_change_nothing(unit_rows, rng, evaluate):
    # Appending masked-out tokens (garbage values) leaves the loss unchanged.
    x, y, xm, ym = _tokens(unit_rows, rng)
    x_pad = np.concatenate([x, 1e3 * rng.normal(size=(5, 2, 6))], axis=1)
    y_pad = np.concatenate([y, 1e3 * rng.normal(size=(5, 3, 6))], axis=1)
    x_pad[0, -1, 0] = np.nan
    xm_pad = np.concatenate([xm, np.zeros((5, 2), bool)], axis=1)
    ym_pad = np.concatenate([ym, np.zeros((5, 3), bool)], axis=1)
    s = np.float32(5.0)
    np.testing.assert_allclose(
        evaluate(filip_chunk2, x_pad, y_pad, s, xm_pad, ym_pad),
        evaluate(filip_chunk2, x, y, s, xm, ym),
        rtol=1e-6,
    )


def test_one_token_per_side_is_infonce(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 6, 6), unit_rows(rng, 6, 6)
    got = evaluate(lambda: filip(x[:, None], y[:, None], 7.0, chunk_size=4))
    np.testing.assert_allclose(got, evaluate(lambda: infonce(x, y, 7.0)), rtol=1e-6)


def test_masking_tokens_equals_deleting_them(unit_rows, rng, evaluate):
    x, y, xm, ym = _tokens(unit_rows, rng)
    s = np.float32(3.0)
    ones_x, ym_last = np.ones((5, 3), bool), np.ones((5, 4), bool)
    ym_last[:, 3] = False
    np.testing.assert_allclose(
        evaluate(filip_chunk2, x, y, s, ones_x, ym_last),
        reference_filip(x, y[:, :3], s),
        rtol=1e-5,
    )
    # 0/1 masks of any dtype work like bool masks.
    np.testing.assert_allclose(
        evaluate(filip_chunk2, x, y, s, xm.astype("int32"), ym.astype("int32")),
        reference_filip(x, y, s, xm, ym),
        rtol=1e-5,
    )


def test_hand_example_2x2(evaluate, compute):
    x = np.array([[[1, 0], [0, 1]], [[1, 0], [1, 0]]], "float32")  # images
    y = np.array([[[1, 0], [0, 1]], [[0, 1], [0, 1]]], "float32")  # texts
    all_valid = np.ones((2, 2), bool)
    i2t, t2i = compute(similarity, x, y, all_valid, all_valid)
    # i2t[a, b] = mean_p max_q <x_ap, y_bq>; t2i[b, a] = mean_q max_p.
    np.testing.assert_allclose(i2t, [[1, 0.5], [1, 0]])
    np.testing.assert_allclose(t2i, [[1, 0.5], [1, 0]])
    # Masking the second token of text 0 leaves it only [1, 0].
    ym = np.array([[True, False], [True, True]])
    i2t, t2i = compute(similarity, x, y, all_valid, ym)
    np.testing.assert_allclose(i2t, [[0.5, 0.5], [1, 0]])
    np.testing.assert_allclose(t2i, [[1, 1], [1, 0]])
    # loss = mean of the two directional cross-entropies of s * sim.
    s = np.float32(2.0)
    want = 0.5 * (
        _ce_diag(s * np.array([[0.5, 0.5], [1, 0]]))
        + _ce_diag(s * np.array([[1, 1], [1, 0]]))
    )
    np.testing.assert_allclose(
        evaluate(filip_default, x, y, s, all_valid, ym), want, rtol=1e-6
    )


def test_batch_of_one_is_zero(unit_rows, rng, evaluate):
    x, y = unit_rows(rng, 1, 3, 6), unit_rows(rng, 1, 4, 6)
    assert evaluate(lambda: filip(x, y, 50.0)) == 0.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_at_scale_100(unit_rows, rng, backend_grad, rounded, low_precision_rtol, dtype):
    x, y, xm, ym = _tokens(unit_rows, rng)
    value, grads = backend_grad(
        filip_default, [x, y], dtype, args=(np.float32(100.0), xm, ym)
    )
    assert all(np.isfinite(g).all() for g in grads)
    want = reference_filip(rounded(x, dtype), rounded(y, dtype), 100.0, xm, ym)
    np.testing.assert_allclose(value, want, rtol=low_precision_rtol)


def test_bad_inputs_are_errors(unit_rows, rng):
    x, y = unit_rows(rng, 4, 3, 6), unit_rows(rng, 4, 4, 6)
    with pytest.raises(ValueError, match="chunk_size"):
        filip(x, y, 1.0, chunk_size=0)
    with pytest.raises(ValueError, match="text_mask"):
        filip(x, y, 1.0, text_mask=np.ones((4, 3), bool))
    with pytest.raises(ValueError, match="batch"):
        filip(x, y[:3], 1.0)
    with pytest.raises(ValueError, match="rank 3"):
        filip(x[:, 0], y, 1.0)
