"""Rematerialisation (gradient checkpointing) of the towers' transformer blocks."""

import keras


def _full_mode():
    # The mode object `keras.RematScope(mode="full")` gives the layers built
    # inside it (Keras 3.15 keeps it in `Operation._remat_mode`).
    with keras.RematScope(mode="full"):
        return keras.layers.Identity()._remat_mode


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
    mode = _full_mode() if enabled else None
    for block in blocks:
        block._remat_mode = mode
    return len(blocks)
