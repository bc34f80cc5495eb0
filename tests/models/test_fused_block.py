"""The fused transformer block (PyTorch) computes keras-hub's CLIP block:
the same output and gradients as the block's own call, both equal to a NumPy
reference written here; on the other backends blocks are left alone."""

import keras
import keras_hub
import numpy as np
import pytest
from keras_hub.src.models.clip.clip_layers import CLIPEncoderLayer

from keras_clip.models.fused_block import fused_block_call, use_fused_blocks
from keras_clip.models.remat import set_remat

TORCH = keras.backend.backend() == "torch"
WIDTH, HEADS, MLP, TOKENS = 8, 2, 12, 5


def _block(causal=True, activation="quick_gelu", dtype=None, seed=0):
    block = CLIPEncoderLayer(WIDTH, HEADS, MLP, activation, use_causal_mask=causal, dtype=dtype)
    block.build((None, TOKENS, WIDTH))
    rng = np.random.default_rng(seed)
    for v in block.weights:  # random values everywhere, biases and layer-norm scales included
        v.assign(rng.normal(size=v.shape, scale=0.5).astype(v.dtype))
    return block


def _weights(block):
    return {v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v) for v in block.weights}


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def numpy_block(x, w, causal, activation):
    """keras-hub's CLIPEncoderLayer by hand: x + MHA(LN1(x)); x + MLP(LN2(x))."""
    hd = WIDTH // HEADS
    h = _layer_norm(x, w["layer_norm_1/gamma"], w["layer_norm_1/beta"])
    q, k, v = (np.einsum("btd,dnh->bnth", h, w[f"attention/{n}/kernel"]) + w[f"attention/{n}/bias"][:, None, :]
               for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
    if causal:
        scores = np.where(np.tril(np.ones((TOKENS, TOKENS), bool)), scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    attended = np.einsum("bnts,bnsh->btnh", p, v)
    x = x + np.einsum("btnh,nhd->btd", attended, w["attention/attention_output/kernel"]) \
        + w["attention/attention_output/bias"]
    h = _layer_norm(x, w["layer_norm_2/gamma"], w["layer_norm_2/beta"]) @ w["dense_1/kernel"] + w["dense_1/bias"]
    if activation == "quick_gelu":
        h = h / (1 + np.exp(-1.702 * h))
    else:  # exact GELU
        from math import erf

        h = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))
    return x + h @ w["dense_2/kernel"] + w["dense_2/bias"]


def _x(seed=1):
    return np.random.default_rng(seed).normal(size=(3, TOKENS, WIDTH)).astype("float32")


@pytest.mark.parametrize("causal,activation", [(True, "quick_gelu"), (False, "gelu")])
def test_block_equals_the_numpy_reference(causal, activation):
    """keras-hub's block on every backend; on PyTorch the fused call too."""
    block = _block(causal, activation)
    x = _x()
    want = numpy_block(x.astype("float64"), _weights(block), causal, activation)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), want, rtol=1e-5, atol=1e-5)
    if not TORCH:
        assert use_fused_blocks(type("Tower", (), {"encoder_layers": [block]})) == 0
        assert "call" not in vars(block)
        return
    import torch

    call = fused_block_call(block)

    got = call(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # ... and a changed weight changes it: the fused call reads the variables.
    old_bias = _weights(block)["dense_2/bias"]
    block.dense_2.bias.assign(np.full(WIDTH, 3.0, "float32"))
    np.testing.assert_allclose(call(torch.from_numpy(x)).detach().numpy(), want - old_bias + 3.0,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not TORCH, reason="the fused block runs on PyTorch only")
@pytest.mark.parametrize("causal", [True, False])
def test_fused_gradients_equal_the_blocks(causal):
    import torch

    block = _block(causal)
    fused = fused_block_call(block)
    weights = [v.value for v in block.trainable_weights]
    target = torch.from_numpy(np.random.default_rng(2).normal(size=(3, TOKENS, WIDTH)).astype("float32"))
    grads = []
    for call in (lambda x: type(block).call(block, x), fused):
        x = torch.from_numpy(_x()).requires_grad_(True)
        (call(x) * target).sum().backward()
        grads.append([x.grad.clone()] + [w.grad.clone() for w in weights])
        for w in weights:
            w.grad = None
    assert len(grads[0]) == len(block.trainable_weights) + 1 == 17
    for want, got in zip(*grads):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not TORCH, reason="the fused block runs on PyTorch only")
def test_fallbacks_run_the_blocks_own_call():
    import torch

    x = torch.from_numpy(_x())
    # Mixed precision: Keras casts per layer, so the block's own call runs.
    mixed = _block(dtype="mixed_bfloat16")
    want = mixed(x)
    mixed.call = fused_block_call(mixed)
    got = mixed(x)
    assert got.dtype == want.dtype == torch.bfloat16
    np.testing.assert_array_equal(got.detach().float().numpy(), want.detach().float().numpy())
    # LoRA on a projection: its update is part of the block's output.
    block = _block()
    fused = fused_block_call(block)
    block.dense_1.enable_lora(2, b_initializer="ones")
    np.testing.assert_array_equal(fused(x).detach().numpy(), type(block).call(block, x).detach().numpy())
    plain = numpy_block(_x().astype("float64"), _weights(_block()), True, "quick_gelu")
    assert np.abs(fused(x).detach().numpy() - plain).max() > 1e-3  # the LoRA term is there
    # Blocks built otherwise are not fused.
    assert fused_block_call(CLIPEncoderLayer(WIDTH, HEADS, MLP)) is None  # not built
    other = keras_hub.layers.TransformerEncoder(MLP, HEADS)
    other.build((None, TOKENS, WIDTH))
    assert fused_block_call(other) is None
    odd = _block()
    odd.dense_1.activation = keras.activations.relu  # an activation the fused MLP would not apply
    assert fused_block_call(odd) is None


def test_clip_fuses_its_blocks_on_torch_only(tiny_clip, tiny_batch):
    model = tiny_clip()
    blocks = list(model.image_encoder.encoder_layers) + list(model.text_encoder.encoder_layers)
    fused = [getattr(vars(b).get("call"), "fused", False) for b in blocks]
    assert fused == [TORCH] * len(blocks)
    if not TORCH:
        return
    batch = tiny_batch()
    got = model(batch)
    for b in blocks:
        del b.call
    want = model(batch)
    for key in ("image_embeddings", "text_embeddings"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got[key]), keras.ops.convert_to_numpy(want[key]),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not TORCH, reason="the fused block runs on PyTorch only")
def test_remat_wraps_and_restores_the_fused_call(tiny_clip):
    model = tiny_clip()
    block = model.image_encoder.encoder_layers[0]
    fused = block.call
    set_remat(model, True)
    assert block.call is not fused and block.call.instance_call is fused
    set_remat(model, False)
    assert block.call is fused
