"""Matmul FLOPs of a CLIP model, counted from its layers.

`jit_compile: "auto"` weighs XLA's compile time against the time it saves,
which grows with the work a run does: its steps times the FLOPs of one step.
The count covers what dominates a transformer's time and nothing else:
every `Dense` and `EinsumDense` kernel applied to every token, the patch
convolution at every output position, and attention's two `T x T`
products (scores and the weighted sum). Layer norms, softmax, GELU and
the loss are left out. A multiply-add counts 2.

`config_forward_flops` gives the same count in closed form from a model
config, for a linear-head ViT CLIP that is not built (the benchmarks use
it for open_clip's side); a test checks the two agree.
"""

import math

import keras


def layer_flops(tower, tokens, image_shape=None):
    """Forward FLOPs of one example through `tower`, whose layers see
    `tokens` tokens (`image_shape`: the input of its patch convolution)."""
    total = 0
    for layer in tower._flatten_layers():  # the tower and every layer inside it, once each
        if isinstance(layer, keras.layers.Conv2D) and image_shape is not None:
            rows = image_shape[0] // layer.strides[0]
            cols = image_shape[1] // layer.strides[1]
            total += 2 * rows * cols * math.prod(layer.kernel.shape)
        elif isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            total += 2 * tokens * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.MultiHeadAttention):
            # scores q.k over key_dim, then the weighted sum of values
            total += 2 * tokens * tokens * layer.num_heads * (layer.key_dim + (layer.value_dim or layer.key_dim))
    return total


def transformer_flops(tokens, width, layers, mlp_dim):
    """Forward FLOPs of `layers` pre-norm transformer blocks on `tokens` tokens."""
    projections = 4 * tokens * width * width  # q, k, v, out
    attention = 2 * tokens * tokens * width  # scores + weighted sum
    mlp = 2 * tokens * width * mlp_dim
    return 2 * layers * (projections + attention + mlp)


def config_forward_flops(model_config):
    """`forward_flops` in closed form from a model config (linear heads)."""
    img, txt = model_config["image_encoder"], model_config["text_encoder"]
    patches = (img["image_size"] // img["patch_size"]) ** 2
    patch_embed = 2 * patches * (img["patch_size"] ** 2 * 3) * img["width"]
    image = patch_embed + transformer_flops(patches + 1, img["width"], img["layers"], img["mlp_dim"])
    text = transformer_flops(txt["context_length"], txt["width"], txt["layers"], txt["mlp_dim"])
    heads = 2 * model_config["embed_dim"] * (img["width"] + txt["width"])
    return image + text + heads


def image_tokens(model):
    """Tokens the image tower's transformer sees per image (class token included)."""
    spec = model.image_encoder.compute_output_spec(
        {"images": keras.KerasTensor((1, *model.image_shape), dtype="float32")}
    )
    return int(spec.shape[1])


def forward_flops(model):
    """Forward FLOPs of one image-text pair: both towers and both heads."""
    image = layer_flops(model.image_encoder, image_tokens(model), image_shape=model.image_shape)
    text = layer_flops(model.text_encoder, int(model.context_length))
    heads = layer_flops(model.image_head, 1) + layer_flops(model.text_head, 1)
    return image + text + heads


def train_step_flops(model, batch_size):
    """FLOPs of one training step at `batch_size`: the forward pass and a
    backward pass of twice its cost (the usual 3x; frozen towers, which
    need less, are counted in full)."""
    return 3 * forward_flops(model) * int(batch_size)
