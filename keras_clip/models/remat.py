"""Rematerialisation (gradient checkpointing) of the towers' transformer blocks."""

import keras


def _remat_call(call):
    """`call(x, training=...)` with `x` rematerialised: `keras.remat` gets
    the block input only (TensorFlow's `tf.recompute_grad` refuses keyword
    arguments in graphs, which is why Keras' own `RematScope` path, passing
    `training=` through, fails in a compiled TensorFlow step)."""

    def wrapped(x, training=None, **kwargs):
        return keras.remat(lambda inputs: call(inputs, training=training, **kwargs))(x)

    return wrapped


def transformer_blocks(model):
    """The transformer blocks of a CLIP's image and text towers."""
    blocks = []
    for name in ("image_encoder", "text_encoder"):
        tower = getattr(model, name, None)
        blocks.extend(getattr(tower, "encoder_layers", None) or [])
    return blocks


def set_remat(model, enabled=True):
    """Turns rematerialisation of the towers' transformer blocks on or off.

    With it on, a training step keeps only each block's input for the
    backward pass and recomputes the block's inside (attention, MLP) while
    back-propagating: Keras' remat, i.e. `jax.checkpoint` on JAX,
    `tf.recompute_grad` on TensorFlow and `torch.utils.checkpoint` on
    PyTorch. Activation memory per block drops from everything inside it to
    its input, at the price of a second forward pass through each block.
    The values and gradients are unchanged. Works on built, loaded and
    imported models alike (it is a training setting and is not saved).

    Args:
        model: a `CLIP` (anything with `image_encoder` / `text_encoder`
            towers holding `encoder_layers`).
        enabled: bool.

    Returns:
        The number of blocks set.
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"remat must be true or false; received remat={enabled!r}.")
    blocks = transformer_blocks(model)
    if enabled and not blocks:
        raise ValueError(
            f"remat=True found no transformer blocks (`encoder_layers`) in the towers of "
            f"{type(model).__name__}; it applies to keras-hub CLIP encoders."
        )
    for block in blocks:
        if "call" in vars(block):  # undo an earlier set_remat
            del block.call
        if enabled:
            block.call = _remat_call(block.call)
        block.remat = enabled
    return len(blocks)
