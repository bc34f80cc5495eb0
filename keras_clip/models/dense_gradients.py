"""The same optimizer step on every backend for embedding tables.

TensorFlow hands an embedding table's gradient to the optimizer as
`tf.IndexedSlices`, one slice per looked-up token, duplicates included.
Keras' Adam squares those slices one by one, so a token seen twice in a batch
gets `g1^2 + g2^2` instead of `(g1 + g2)^2` in its second moment, and only the
rows looked up move their moments: the update differs from JAX's and
PyTorch's dense one. `dense_gradient_optimizer` returns the optimizer as an
instance of a subclass whose `apply` densifies the gradients first.

`CLIP.compile(..., dense_gradients=True)` (the default) applies it on
TensorFlow; on JAX and PyTorch gradients are dense already and the optimizer
is returned unchanged. The subclass keeps the base class's name and module,
so a saved model stores a plain Keras optimizer, and `compile_from_config`
applies the subclass again on load.
"""

import keras

from keras_clip.utils.backend import densify_gradients


class DenseGradients:
    """Optimizer mixin: densify `tf.IndexedSlices` before the update, and
    evaluate the learning-rate schedule once per step.

    Keras reads `optimizer.learning_rate` once per variable in TensorFlow's
    weight decay, so a schedule (warmup then cosine: a `tf.cond`) was traced
    and run once per variable, about 190 times per step for the `shapes`
    model: a third of the step's trace time. Within one `apply` the iteration
    count does not change until the end, so every read sees the same value;
    it is computed once and reused.
    """

    _step_learning_rate = None

    def apply(self, grads, trainable_variables=None):
        self._step_learning_rate = super()._get_current_learning_rate()
        try:
            return super().apply(densify_gradients(list(grads)), trainable_variables)
        finally:
            self._step_learning_rate = None

    def _get_current_learning_rate(self):
        if self._step_learning_rate is not None:
            return self._step_learning_rate
        return super()._get_current_learning_rate()


_SUBCLASSES = {}


def _dense_class(cls):
    if cls not in _SUBCLASSES:
        _SUBCLASSES[cls] = type(cls.__name__, (DenseGradients, cls), {"__module__": cls.__module__})
    return _SUBCLASSES[cls]


def dense_gradient_optimizer(optimizer):
    """`optimizer` (a name, config or instance) whose updates see dense
    gradients. Unchanged off TensorFlow, when it is dense already, or when it
    has already built its state (a fresh copy would lose it)."""
    optimizer = keras.optimizers.get(optimizer)
    if keras.backend.backend() != "tensorflow" or isinstance(optimizer, DenseGradients):
        return optimizer
    if optimizer.built:
        return optimizer
    dense = _dense_class(type(optimizer)).from_config(optimizer.get_config())
    # `exclude_from_weight_decay` is not part of an optimizer's config: carry
    # it over, or biases, norms, embeddings and the temperature would decay.
    for name in ("_exclude_from_weight_decay", "_exclude_from_weight_decay_pattern"):
        if hasattr(optimizer, name):
            setattr(dense, name, getattr(optimizer, name))
    return dense
