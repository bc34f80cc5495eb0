"""The tokenizer interface every keras_clip tokenizer implements.

The model builder, the data pipeline, evaluation and export talk to a
tokenizer only through this interface, so a word-level vocabulary built from
the user's captions (`CaptionTokenizer`) and OpenAI's byte-level BPE
(`CLIPTokenizer`) are interchangeable.
"""

import keras


class Tokenizer(keras.layers.Layer):
    """Base class: raw strings -> fixed-length int32 token ids.

    A tokenizer is a Keras layer (so a `.keras` file carries it inside the
    model) that:
    - maps a list of `B` strings to a `(B, T)` int32 array, `T =
      context_length`: `[start, ..., end, pad, ...]`, the end token always
      present (truncation keeps it in the last place);
    - runs eagerly (returning NumPy), inside `tf.data.Dataset.map` and inside
      a `tf.function` (returning a `tf.Tensor`), on every Keras backend;
    - names its special ids and sizes: `vocabulary_size`, `context_length`,
      `start_token_id`, `end_token_id`, `pad_token_id`;
    - lists the TensorFlow resources (lookup tables) an exported SavedModel
      must track to tokenize strings itself: `export_resources()`;
    - saves its assets to a folder (`save(dirpath)`) and round-trips through
      `get_config` / `from_config`.

    Subclasses implement `tokenize(strings)` (TensorFlow ops only, so that it
    traces in tf.data and SavedModel export) and the properties.
    """

    # ------------------------------------------------------------ the interface
    @property
    def vocabulary_size(self):
        raise NotImplementedError

    @property
    def context_length(self):
        raise NotImplementedError

    @property
    def start_token_id(self):
        raise NotImplementedError

    @property
    def end_token_id(self):
        raise NotImplementedError

    @property
    def pad_token_id(self):
        raise NotImplementedError

    def tokenize(self, strings):
        """(B,) strings -> (B, T) int32; NumPy when eager, tf.Tensor in a graph."""
        raise NotImplementedError

    def export_resources(self):
        """TensorFlow trackables (lookup tables) an `ExportArchive` must track so
        that `tokenize` works inside the exported SavedModel."""
        return []

    def save(self, dirpath):
        """Writes the tokenizer's assets into `dirpath` (a run's `tokenizer/`)."""
        raise NotImplementedError

    # --------------------------------------------------------------- shared code
    def __call__(self, inputs, *args, **kwargs):
        # Symbolic (functional model construction): let Keras handle it.
        if isinstance(inputs, keras.KerasTensor):
            return super().__call__(inputs, *args, **kwargs)
        # Real data: bypass Keras' input conversion, which would try to turn
        # strings into backend tensors (impossible under JAX / PyTorch).
        return self.tokenize(inputs)

    def call(self, inputs):
        return self.tokenize(inputs)

    def compute_output_spec(self, inputs, *args, **kwargs):
        shape = tuple(inputs.shape) + (self.context_length,)
        return keras.KerasTensor(shape, dtype="int32")


def check_tokenizer(tokenizer):
    """Raises a clear error when `tokenizer` lacks part of the interface."""
    missing = [
        name
        for name in ("vocabulary_size", "context_length", "start_token_id", "end_token_id", "pad_token_id", "tokenize")
        if not hasattr(tokenizer, name)
    ]
    if missing:
        raise TypeError(
            f"{type(tokenizer).__name__} is not a keras_clip tokenizer: it lacks {missing}. "
            "Use keras_clip.tokenizers.CaptionTokenizer or CLIPTokenizer, or subclass "
            "keras_clip.tokenizers.Tokenizer."
        )
    return tokenizer
