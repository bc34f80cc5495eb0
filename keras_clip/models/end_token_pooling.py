import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_clip")
class EndTokenPooling(keras.layers.Layer):
    """Pools a text sequence at its end-of-text token.

    CLIP's text embedding is the causal transformer's output at the
    end-of-text (EOT) token, the only position that has seen the whole
    caption. The position is found by matching `end_token_id` (first
    occurrence per row), not by `argmax(token_ids)`, which is right only when
    EOT happens to have the largest id in the vocabulary. A row with no EOT
    (a caption cut off by hand) falls back to its last non-padding token.

    Args:
        end_token_id: int. Id of the end-of-text token.
        pad_token_id: int. Id of padding, used for the fallback. Defaults to 0.

    Example:
    ```python
    pool = keras_clip.models.EndTokenPooling(end_token_id=3)
    seq = np.arange(2 * 4 * 1, dtype="float32").reshape(2, 4, 1)
    pool(seq, np.array([[2, 5, 3, 0], [2, 3, 0, 0]]))  # [[2.], [5.]]
    ```
    """

    def __init__(self, end_token_id, pad_token_id=0, **kwargs):
        super().__init__(**kwargs)
        self.end_token_id = int(end_token_id)
        self.pad_token_id = int(pad_token_id)
        # No weights: built from the start, so that Keras' symbolic build of
        # a model under a tf.distribute strategy (which it runs when some
        # layer is unbuilt, on a batch it averages into floats) is not needed.
        self.built = True

    def end_positions(self, token_ids):
        """Index of each row's end-of-text token, `(B,)` int32."""
        is_end = ops.equal(token_ids, self.end_token_id)  # (B, T)
        first_end = ops.argmax(ops.cast(is_end, "int32"), axis=1)  # (B,)
        num_tokens = ops.sum(ops.cast(ops.not_equal(token_ids, self.pad_token_id), "int32"), axis=1)
        last_token = ops.maximum(num_tokens - 1, 0)  # (B,)
        has_end = ops.any(is_end, axis=1)
        return ops.cast(ops.where(has_end, first_end, last_token), "int32")

    def call(self, sequence, token_ids):
        positions = self.end_positions(token_ids)[:, None, None]  # (B, 1, 1)
        pooled = ops.take_along_axis(sequence, positions, axis=1)  # (B, 1, D)
        return ops.squeeze(pooled, axis=1)  # (B, D)

    def compute_output_shape(self, sequence_shape, token_ids_shape=None):
        return (sequence_shape[0], sequence_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"end_token_id": self.end_token_id, "pad_token_id": self.pad_token_id})
        return config
