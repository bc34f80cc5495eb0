"""The one place that asks which backend runs, for the few things `keras.ops` can't say.

Everything else in keras_clip is written with `keras.ops`.
"""

import keras


def is_concrete(x):
    """True when `x` holds real values now (eager), False while tracing a graph.

    Value-dependent input checks (for example "token id >= vocabulary size")
    run only on concrete tensors; inside `tf.function`, `jax.jit` or a
    symbolic Keras build they are skipped, because the values don't exist yet.
    """
    if keras.backend.is_keras_tensor(x):
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and not tf.is_symbolic_tensor(x)
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not (torch.compiler.is_compiling() or torch.jit.is_tracing())
    return True
