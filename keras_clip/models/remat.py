"""Rematerialisation (gradient checkpointing) of the towers' transformer blocks."""

import os
import warnings

import keras

from keras_clip.utils.backend import jax_platform, jax_started

# XLA's CPU compiler orders a program for parallelism by default (its
# "concurrency optimized" scheduler), which keeps the forward activations
# that `jax.checkpoint` means to drop: measured on the 4 + 4 layer model of
# benchmarks/remat_memory.py at B=256, the compiled step's temporary buffers
# were 1,758 MB with and without remat; with this flag, 1,210 MB plain and
# 604 MB with remat. It is read once, when JAX starts its CPU backend.
JAX_CPU_MEMORY_SCHEDULE_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
_FLAG_NAME = JAX_CPU_MEMORY_SCHEDULE_FLAG.split("=")[0]


def prepare_jax_cpu_remat():
    """On JAX, before its first computation: adds `JAX_CPU_MEMORY_SCHEDULE_FLAG`
    to `XLA_FLAGS`, so that remat saves memory on CPU (GPU and TPU compiles
    ignore the flag). Returns False when it is too late (JAX's backends
    already started without it) or the user's `XLA_FLAGS` set it otherwise;
    True when it is in effect, and on other backends."""
    if keras.backend.backend() != "jax":
        return True
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG_NAME in flags:
        return JAX_CPU_MEMORY_SCHEDULE_FLAG in flags
    if jax_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {JAX_CPU_MEMORY_SCHEDULE_FLAG}".strip()
    return True


def _warn_if_jax_cpu_keeps_activations():
    if jax_platform() == "cpu" and not prepare_jax_cpu_remat():
        warnings.warn(
            "remat on JAX's CPU backend saves memory only with XLA's memory-ordered "
            f"schedule: set XLA_FLAGS={JAX_CPU_MEMORY_SCHEDULE_FLAG} before the first JAX "
            "computation (build_clip(..., remat=True) and `keras-clip train` do this "
            "when they run first). Without it, the step's values are the same and its "
            "peak memory is not lowered.",
            stacklevel=3,
        )


def _remat_call(block):
    """The block's `call(x, training=...)` with `x` rematerialised:
    `keras.remat` gets the block input only (TensorFlow's `tf.recompute_grad`
    refuses keyword arguments in graphs, which is why Keras' own `RematScope`
    path, passing `training=` through, fails in a compiled TensorFlow step).
    `instance_call` records the call set on the block itself before (a fused
    call, models/fused_block.py), or None, for `set_remat` to restore."""
    call = block.call

    def wrapped(x, training=None, **kwargs):
        return keras.remat(lambda inputs: call(inputs, training=training, **kwargs))(x)

    wrapped.instance_call = vars(block).get("call")
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
    if enabled and keras.backend.backend() == "jax":
        _warn_if_jax_cpu_keeps_activations()
    for block in blocks:
        current = vars(block).get("call")
        if hasattr(current, "instance_call"):  # undo an earlier set_remat
            if current.instance_call is None:
                del block.call
            else:
                block.call = current.instance_call
        if enabled:
            block.call = _remat_call(block)
        block.remat = enabled
    return len(blocks)
