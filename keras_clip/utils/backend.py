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


def densify_gradients(gradients):
    """TensorFlow returns an embedding table's gradient as `tf.IndexedSlices`,
    one slice per looked-up token, duplicates included. Keras' Adam squares
    those slices one by one, so a token seen twice in a batch gets
    `g1^2 + g2^2` instead of `(g1 + g2)^2` in its second moment: the update
    differs from JAX's and PyTorch's (dense) one. Densifying first makes all
    three backends take the same step."""
    if keras.backend.backend() != "tensorflow":
        return gradients
    import tensorflow as tf

    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]


def run_after(values, step):
    """`step()`, with every TensorFlow op it creates ordered after `values`.

    In a `tf.function` TensorFlow orders the reads and writes of one variable
    in program order, but a read only has to *start* before a later write;
    whether its consumers still see the old value then rests on the
    runtime's copy-on-write. A control dependency on `values` (tensors
    computed from the reads) makes the ordering explicit: nothing in `step`
    starts before they exist. The other backends run the step as written
    (PyTorch eagerly, JAX as a pure function of the state)."""
    if keras.backend.backend() != "tensorflow":
        return step()
    import tensorflow as tf

    with tf.control_dependencies([v for v in values if tf.is_tensor(v)]):
        return step()


def sequential_fori_loop(n, body, init):
    """`keras.ops.fori_loop(0, n, body, init)`, one iteration after another.

    On TensorFlow `keras.ops.fori_loop` is a `tf.while_loop` that may run 10
    iterations at once; a loop whose iterations each hold a large temporary
    (the blockwise losses' (block_size, B) strips) then holds ten of them.
    Here TensorFlow gets `parallel_iterations=1`; the other backends'
    loops already run in order."""
    if keras.backend.backend() != "tensorflow":
        return keras.ops.fori_loop(0, n, body, init)
    import tensorflow as tf

    _, carry = tf.while_loop(
        lambda i, _: i < n, lambda i, c: (i + 1, body(i, c)), (tf.constant(0), init),
        parallel_iterations=1,
    )
    return carry


def jax_started():
    """True once JAX has started its backends (after that, `XLA_FLAGS` is no longer read)."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def jax_platform():
    """The platform JAX computes on by default: "cpu", "gpu" or "tpu" (starts JAX)."""
    import jax

    return jax.default_backend()
