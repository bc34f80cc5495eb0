import keras

HEAD_KINDS = ("linear", "mlp")
NORMALIZATIONS = (None, "layer", "batch")


@keras.saving.register_keras_serializable(package="keras_clip")
class ProjectionHead(keras.layers.Layer):
    """Maps a tower's features into the shared embedding space.

    `kind="linear"` is CLIP's head: one bias-free matrix (OpenAI's
    `visual.proj` / `text_projection`). `kind="mlp"` is the SimCLR / SupCon
    head: `hidden_dims` Dense layers, each followed by an optional
    normalisation and the activation, then a final Dense to `output_dim`.
    Works on pooled features `(B, D)` and on token features `(B, N, D)`.

    Args:
        output_dim: int. Size of the shared embedding.
        kind: str. `"linear"` (default) or `"mlp"`.
        hidden_dims: tuple of ints. Hidden sizes of the MLP (ignored for
            `"linear"`). Defaults to one hidden layer of `output_dim`.
        activation: str. Activation between MLP layers. Defaults to `"gelu"`.
        normalization: None, `"layer"` or `"batch"`. Normalisation after each
            hidden Dense of the MLP.
        use_bias: bool or None. Bias on the Dense layers; None means False for
            `"linear"` (as CLIP) and True for `"mlp"`.

    Example:
    ```python
    head = keras_clip.models.ProjectionHead(64, kind="mlp", hidden_dims=(128,))
    head(np.zeros((4, 32), "float32")).shape  # (4, 64)
    ```

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of
    Visual Representations" (SimCLR), 2020, section 2.1.
    """

    def __init__(
        self,
        output_dim,
        kind="linear",
        hidden_dims=None,
        activation="gelu",
        normalization=None,
        use_bias=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in HEAD_KINDS:
            raise ValueError(f"Unknown projection head kind={kind!r}; use one of {HEAD_KINDS}.")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"Unknown normalization={normalization!r}; use one of {NORMALIZATIONS}."
            )
        self.output_dim = int(output_dim)
        self.kind = kind
        self.hidden_dims = tuple(int(h) for h in (hidden_dims or ((self.output_dim,) if kind == "mlp" else ())))
        self.activation = activation
        self.normalization = normalization
        self.use_bias = use_bias
        bias = (kind == "mlp") if use_bias is None else bool(use_bias)

        # === Layers ===
        self.hidden_layers = []
        if kind == "mlp":
            for i, dim in enumerate(self.hidden_dims):
                block = [keras.layers.Dense(dim, use_bias=bias, dtype=self.dtype_policy, name=f"dense_{i}")]
                if normalization == "layer":
                    block.append(keras.layers.LayerNormalization(dtype=self.dtype_policy, name=f"norm_{i}"))
                elif normalization == "batch":
                    block.append(keras.layers.BatchNormalization(dtype=self.dtype_policy, name=f"norm_{i}"))
                block.append(keras.layers.Activation(activation, dtype=self.dtype_policy, name=f"act_{i}"))
                self.hidden_layers.append(block)
        self.output_layer = keras.layers.Dense(
            self.output_dim, use_bias=bias, dtype=self.dtype_policy, name="projection"
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.hidden_layers:
            for layer in block:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        self.output_layer.build(shape)
        self.built = True

    def call(self, x, training=None):
        for block in self.hidden_layers:
            for layer in block:
                x = layer(x, training=training)
        return self.output_layer(x)  # (..., output_dim)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "kind": self.kind,
                "hidden_dims": list(self.hidden_dims),
                "activation": self.activation,
                "normalization": self.normalization,
                "use_bias": self.use_bias,
            }
        )
        return config


def make_head(spec, output_dim, dtype, name):
    """A ProjectionHead from a layer, a kind name, or a dict of its arguments."""
    if isinstance(spec, keras.layers.Layer):
        return spec
    if spec is None or isinstance(spec, str):
        spec = {"kind": spec or "linear"}
    spec = dict(spec)
    spec.setdefault("output_dim", output_dim)
    return ProjectionHead(**spec, dtype=dtype, name=name)
