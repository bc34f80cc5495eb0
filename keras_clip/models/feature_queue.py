import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_clip")
class FeatureQueue(keras.layers.Layer):
    """A first-in first-out memory of the last `size` image and text embeddings.

    MoCo's view of InfoNCE: the loss is a (K+1)-way classification of a query
    against its positive key and K negatives, and the negatives need not come
    from the current batch. Keeping past embeddings gives a small batch many
    more negatives. The queue lives in non-trainable float32 variables that
    the model's training step updates after computing the loss (with
    stop-gradient), on every backend; `valid` marks filled slots so that
    unfilled ones are masked out of the loss. The current batch is enqueued
    only after its loss is computed, so it never contrasts with itself
    through the queue.

    Use it with the model's momentum towers (`CLIP(momentum=...)`), which
    then fill it with their keys: embeddings of the trained towers go stale
    within a few steps, and without momentum training collapsed to chance
    on the shapes set at batch 16 (MoCo reports the same for m = 0).

    Args:
        size: int. Number of slots K (at least the batch size).
        dim: int. Embedding width.

    Reference: He et al., "Momentum Contrast for Unsupervised Visual
    Representation Learning", arXiv:1911.05722.
    """

    def __init__(self, size, dim, **kwargs):
        super().__init__(**kwargs)
        if size < 1:
            raise ValueError(f"FeatureQueue size must be >= 1; received size={size}.")
        self.size = int(size)
        self.dim = int(dim)

    def build(self, input_shape=None):
        def slots(name, shape, dtype="float32"):
            return self.add_weight(
                shape=shape, initializer="zeros", trainable=False, dtype=dtype, autocast=False, name=name
            )

        self.image_queue = slots("image_queue", (self.size, self.dim))
        self.text_queue = slots("text_queue", (self.size, self.dim))
        self.valid = slots("valid", (self.size,))
        self.pointer = slots("pointer", (), "int32")
        self.built = True

    def contents(self):
        """`{"image_queue": (K, D), "text_queue": (K, D), "queue_valid": (K,) bool}`.

        Copies, not views: the loss still reads them when `enqueue` overwrites
        the variables (PyTorch's autograd rejects an in-place change of a
        tensor that the backward pass needs)."""
        return {
            "image_queue": ops.copy(self.image_queue),
            "text_queue": ops.copy(self.text_queue),
            "queue_valid": ops.greater(ops.copy(self.valid), 0.5),
        }

    def enqueue(self, image_embeddings, text_embeddings):
        """Writes a batch into the oldest slots (ring buffer)."""
        batch = image_embeddings.shape[0]
        if batch is not None and batch > self.size:
            raise ValueError(
                f"The feature queue has {self.size} slots but the batch has {batch} pairs; "
                f"use queue_size >= batch_size."
            )
        count = ops.shape(image_embeddings)[0]
        index = ops.mod(ops.convert_to_tensor(self.pointer) + ops.arange(count, dtype="int32"), self.size)[:, None]
        image = ops.stop_gradient(ops.cast(image_embeddings, "float32"))
        text = ops.stop_gradient(ops.cast(text_embeddings, "float32"))
        self.image_queue.assign(ops.scatter_update(self.image_queue, index, image))
        self.text_queue.assign(ops.scatter_update(self.text_queue, index, text))
        self.valid.assign(ops.scatter_update(self.valid, index, ops.ones((count,), "float32")))
        self.pointer.assign(ops.cast(ops.mod(ops.convert_to_tensor(self.pointer) + count, self.size), "int32"))

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "dim": self.dim})
        return config
