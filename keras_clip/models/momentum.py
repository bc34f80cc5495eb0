"""MoCo-style momentum (EMA) key towers of a `CLIP` model.

`CLIP(momentum=m)` keeps a non-trainable twin of both towers and both heads;
these functions make the twins and move them (He et al., "Momentum Contrast
for Unsupervised Visual Representation Learning", arXiv:1911.05722).
"""

import keras
from keras import ops

# MoCo's EMA decay of the key encoder.
MOCO_MOMENTUM = 0.999


def resolve_momentum(momentum):
    """`True` -> MoCo's 0.999, `False`/`None` -> None, else a float in [0, 1)."""
    if momentum is True:
        return MOCO_MOMENTUM
    if momentum is None or momentum is False:
        return None
    momentum = float(momentum)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(
            f"momentum must be in [0, 1) (the EMA decay of the key encoder, e.g. "
            f"0.999); received momentum={momentum}. Use None for no momentum copy."
        )
    return momentum


def frozen_copy(layer, name, input_shape=None):
    """A non-trainable twin of `layer` (same config) holding its current weights."""
    config = layer.get_config()
    config["name"] = name
    copy = layer.__class__.from_config(config)
    if not copy.built:
        copy.build(input_shape)
    if len(copy.weights) != len(layer.weights):
        raise ValueError(
            f"Cannot make a momentum copy of layer {layer.name!r}: the copy built from its "
            f"config has {len(copy.weights)} weights, the layer {len(layer.weights)}."
        )
    for target, source in zip(copy.weights, layer.weights):
        # Through NumPy: a buffer of its own (JAX donates variable buffers to
        # the jitted step, and one buffer must not back two variables).
        target.assign(ops.convert_to_numpy(source.value))
    copy.trainable = False
    return copy


def _check(model):
    if model.momentum is None:
        raise ValueError("This model has no momentum copy; build it with momentum=0.999 (say).")


def momentum_pairs(model):
    """(trained variable, its moving-average twin) for every float weight."""
    _check(model)
    for online, twin in (
        (model.image_encoder, model.momentum_image_encoder),
        (model.text_encoder, model.momentum_text_encoder),
        (model.image_head, model.momentum_image_head),
        (model.text_head, model.momentum_text_head),
    ):
        for source, target in zip(online.weights, twin.weights):
            if "float" in keras.backend.standardize_dtype(target.dtype):
                yield source, target


def update_momentum(model):
    """One EMA step of the key towers: `k <- m k + (1 - m) q` (no gradient).
    Returns the twins' new values."""
    m = model.momentum
    new_values = []
    for source, target in momentum_pairs(model):
        online = ops.stop_gradient(ops.cast(source.value, target.dtype))
        new_values.append(m * target.value + (1.0 - m) * online)
        target.assign(new_values[-1])
    return new_values


def momentum_keys(model, images, token_ids):
    """The twins' image and text embeddings of a batch (L2-normalised,
    float32, stop-gradient): the keys MoCo contrasts queries against."""
    _check(model)
    sequence = model._image_tokens(images, training=False, encoder=model.momentum_image_encoder)
    image_keys = model.momentum_image_head(sequence[:, 0], training=False)  # (B, D)
    text_sequence = model.momentum_text_encoder({"token_ids": token_ids}, training=False)  # (B, T, W)
    text_keys = model.momentum_text_head(model.text_pooling(text_sequence, token_ids), training=False)  # (B, D)
    return (
        ops.stop_gradient(model._l2_normalize(image_keys)),
        ops.stop_gradient(model._l2_normalize(text_keys)),
    )
