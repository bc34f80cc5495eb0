"""keras-hub's CLIP text transformer with the final layer norm's epsilon as an argument."""

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="keras_clip")
class TextEncoder(keras_hub.models.CLIPTextEncoder):
    """keras-hub's `CLIPTextEncoder` whose final layer norm takes `final_layer_norm_epsilon`.

    keras-hub 0.32 hard-codes `epsilon=1e-6` on the text tower's final layer
    norm, while OpenAI, open_clip and Hugging Face use PyTorch's default
    `1e-5`. With trained weights the difference is small; with freshly
    initialised ones (token embeddings of std 0.02, so activations of variance
    ~4e-4) it is a few percent. An imported model keeps the epsilon of its
    source: `1e-5` for OpenAI / open_clip / Hugging Face checkpoints, `1e-6`
    for keras-hub presets. Every other layer norm of the tower uses `1e-5`,
    as in all three sources.

    Args:
        final_layer_norm_epsilon: float. Epsilon of the final layer norm.
            Defaults to `1e-5` (PyTorch's default).
        **kwargs: the arguments of `keras_hub.models.CLIPTextEncoder`
            (`vocabulary_size`, `embedding_dim`, `hidden_dim`, `num_layers`,
            `num_heads`, `intermediate_dim`, `intermediate_activation`,
            `max_sequence_length`, ...).

    Example:
    ```python
    encoder = TextEncoder(
        vocabulary_size=49408, embedding_dim=512, hidden_dim=512, num_layers=12,
        num_heads=8, intermediate_dim=2048, final_layer_norm_epsilon=1e-5,
    )
    ```
    """

    def __init__(self, *args, final_layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        # LayerNormalization reads `epsilon` at call time, so the functional
        # graph built by the parent picks the new value up.
        self.layer_norm.epsilon = float(final_layer_norm_epsilon)
        self.final_layer_norm_epsilon = float(final_layer_norm_epsilon)

    def get_config(self):
        config = super().get_config()
        config["final_layer_norm_epsilon"] = self.final_layer_norm_epsilon
        return config
