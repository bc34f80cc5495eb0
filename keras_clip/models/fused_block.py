"""On PyTorch, a CLIP transformer block in one call of torch's functional ops.

keras-hub's `CLIPEncoderLayer` runs ten Keras layers per block (two layer
norms, the attention layer and its four projections, two dense layers and
the activation). Eager PyTorch pays Keras' per-layer Python work (argument
binding, dtype and mask handling, attribute tracking) on every one of them,
every step: at batch 2, where the kernels cost little, a forward pass of the
`shapes` model took 20 ms. `fused_block_call` computes the same block
straight from the layers' variables: layer norm, one matmul for Q, K and V
(the three kernels side by side), `scaled_dot_product_attention`, the output
projection, layer norm and the MLP, with the bias folded into each matmul.

The variables are the layers' own (same names, shapes and checkpoints), and
the output is the block's. JAX and TensorFlow trace a step once, so Keras'
Python work is not paid per step there and their blocks are left alone.
A block falls back to keras-hub's own `call` where the fused one would not
compute the same thing: a mixed-precision policy (Keras casts per layer),
LoRA or quantised projections, attention dropout in training, or an input
carrying a Keras mask.
"""

import math

import keras


def _structure_matches(block):
    """Whether `block` is built like keras-hub's `CLIPEncoderLayer` with
    biases, default layer norms and self-attention over the token axis."""
    names = ("layer_norm_1", "attention", "layer_norm_2", "dense_1", "activation", "dense_2", "use_causal_mask")
    if not block.built or not all(hasattr(block, name) for name in names):
        return False
    attention = block.attention
    if not isinstance(attention, keras.layers.MultiHeadAttention):
        return False
    dense = [getattr(attention, f"_{n}_dense", None) for n in ("query", "key", "value", "output")]
    if any(d is None or d.bias is None for d in dense) or attention._value_dim != attention._key_dim \
            or attention._attention_axes not in (None, (1,)):
        return False
    heads, head_dim = attention._num_heads, attention._key_dim
    width = tuple(dense[0].kernel.shape)[0]
    shapes = [tuple(d.kernel.shape) for d in dense]
    if shapes != [(width, heads, head_dim)] * 3 + [(heads, head_dim, width)]:
        return False
    for norm in (block.layer_norm_1, block.layer_norm_2):
        if not isinstance(norm, keras.layers.LayerNormalization) or norm.gamma is None or norm.beta is None \
                or getattr(norm, "rms_scaling", False):
            return False
        axis = tuple(norm.axis) if isinstance(norm.axis, (list, tuple)) else (norm.axis,)
        if axis not in ((-1,), (2,)):
            return False
    mlp = (block.dense_1, block.dense_2)
    linear = (None, keras.activations.linear)
    return all(isinstance(d, keras.layers.Dense) and d.bias is not None and d.activation in linear for d in mlp)


def _projections(block):
    a = block.attention
    return (a._query_dense, a._key_dense, a._value_dense, a._output_dense, block.dense_1, block.dense_2)


def _falls_back(block, x, training):
    if block.compute_dtype != block.variable_dtype or getattr(x, "_keras_mask", None) is not None:
        return True
    if training and block.attention._dropout > 0:
        return True
    return any(getattr(d, "lora_enabled", False) or getattr(d, "quantization_mode", None) for d in _projections(block))


def fused_block_call(block):
    """A `call(x, training=None)` for `block` (a built keras-hub
    `CLIPEncoderLayer`) computing its output with torch's functional ops; None
    when the block is built otherwise. Cases the fused call does not cover
    run the block's own `call`."""
    if not _structure_matches(block):
        return None
    import torch
    import torch.nn.functional as F

    original = type(block).call
    norm_1, attention, norm_2 = block.layer_norm_1, block.attention, block.layer_norm_2
    query, key, value, output, dense_1, dense_2 = _projections(block)
    heads, head_dim = attention._num_heads, attention._key_dim
    scale = 1.0 / math.sqrt(head_dim)
    causal = bool(block.use_causal_mask)
    activation = block.activation.activation

    def call(x, training=None):
        if _falls_back(block, x, training):
            return original(block, x, training=training)
        batch, tokens, width = x.shape
        rows = x.reshape(batch * tokens, width)
        h = F.layer_norm(rows, (width,), norm_1.gamma.value, norm_1.beta.value, norm_1.epsilon)
        qkv_kernel = torch.cat([d.kernel.value.reshape(width, heads * head_dim) for d in (query, key, value)], 1)
        qkv_bias = torch.cat([d.bias.value.reshape(heads * head_dim) for d in (query, key, value)])
        qkv = torch.addmm(qkv_bias, h, qkv_kernel).view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=causal, scale=scale)
        attended = attended.transpose(1, 2).reshape(batch * tokens, heads * head_dim)
        rows = rows + torch.addmm(output.bias.value, attended, output.kernel.value.reshape(heads * head_dim, width))
        h = F.layer_norm(rows, (width,), norm_2.gamma.value, norm_2.beta.value, norm_2.epsilon)
        h = activation(torch.addmm(dense_1.bias.value, h, dense_1.kernel.value))
        rows = rows + torch.addmm(dense_2.bias.value, h, dense_2.kernel.value)
        return rows.view(batch, tokens, width)

    call.fused = True
    return call


def use_fused_blocks(tower):
    """On PyTorch, runs each transformer block of `tower` (its
    `encoder_layers`) with `fused_block_call`; elsewhere, and for blocks
    built otherwise, nothing changes. Returns the number of blocks fused."""
    if keras.backend.backend() != "torch":
        return 0
    fused = 0
    for block in getattr(tower, "encoder_layers", None) or []:
        if "call" in vars(block):  # already fused, or wrapped (remat)
            continue
        call = fused_block_call(block)
        if call is not None:
            block.call = call
            fused += 1
    return fused
