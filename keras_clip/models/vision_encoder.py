"""keras-hub's CLIP ViT with patch dropout (FLIP) in training."""

import keras
import keras_hub
from keras import ops


@keras.saving.register_keras_serializable(package="keras_clip")
class VisionEncoder(keras_hub.models.CLIPVisionEncoder):
    """keras-hub's `CLIPVisionEncoder` that drops patch tokens in training.

    FLIP (Li et al. 2023, "Scaling Language-Image Pre-training via Masking",
    arXiv:2212.00794) trains CLIP on a random subset of each image's patches:
    with half or a quarter of the tokens, every transformer block costs half
    or a quarter (attention less still), so a step is that much faster and
    holds that much less activation memory. Here, in training only, each
    example keeps `round((1 - patch_dropout) * P)` of its `P` patch tokens
    (at least one), chosen uniformly at random per example after the position
    embeddings are added and before the pre-layer-norm and the blocks; the
    class token is always kept, and the kept patches stay in their original
    order. At inference (`training=False`) nothing is dropped: the output is
    the plain encoder's, `(B, 1 + P, width)`.

    The random draws come from this layer's `SeedGenerator`, whose state is
    one of the model's non-trainable variables, so a micro-batched step
    (`keras_clip.models.micro_batch`) replays the same masks in its second
    pass. The weights (names, shapes, order) are those of the parent class, so
    pretrained imports map into it unchanged.

    Args:
        patch_dropout: float in `[0, 1)`. Fraction of patch tokens dropped in
            training.
        seed: optional int, seed of the patch draws.
        **kwargs: the arguments of `keras_hub.models.CLIPVisionEncoder`
            (`patch_size`, `hidden_dim`, `num_layers`, `num_heads`,
            `intermediate_dim`, `image_shape`, ...).

    Example:
    ```python
    encoder = VisionEncoder(
        patch_size=16, hidden_dim=768, num_layers=12, num_heads=12,
        intermediate_dim=3072, image_shape=(224, 224, 3), patch_dropout=0.5,
    )
    ```
    """

    def __init__(self, *args, patch_dropout=0.0, seed=None, **kwargs):
        if isinstance(patch_dropout, bool) or not isinstance(patch_dropout, (int, float)) or not (
            0.0 <= patch_dropout < 1.0
        ):
            raise ValueError(
                f"patch_dropout must be a fraction in [0, 1) (0 keeps every patch); "
                f"received patch_dropout={patch_dropout!r}."
            )
        super().__init__(*args, **kwargs)
        self.patch_dropout = float(patch_dropout)
        self.seed = seed
        side = self.image_shape[0] if self.data_format_is_last() else self.image_shape[1]
        self.num_patches = (side // self.patch_size) ** 2
        self.kept_patches = max(1, int(round((1.0 - self.patch_dropout) * self.num_patches)))
        self.seed_generator = None
        if self.patch_dropout > 0:
            self.seed_generator = keras.random.SeedGenerator(seed, name="patch_dropout_seed")

    def data_format_is_last(self):
        return getattr(self.embedding, "data_format", "channels_last") == "channels_last"

    def drop_patches(self, x):
        """`(B, 1 + P, W)` -> `(B, 1 + kept, W)`: the class token and a random
        subset of each example's patch tokens, in their original order."""
        batch, width = ops.shape(x)[0], ops.shape(x)[-1]
        noise = keras.random.uniform((batch, self.num_patches), seed=self.seed_generator)
        _, keep = ops.top_k(noise, self.kept_patches)
        keep = ops.sort(keep, axis=1)
        index = ops.broadcast_to(ops.expand_dims(keep, -1), (batch, self.kept_patches, width))
        patches = ops.take_along_axis(x[:, 1:], index, axis=1)
        return ops.concatenate([x[:, :1], patches], axis=1)

    def call(self, inputs, training=None, mask=None):
        if not training or self.patch_dropout == 0:
            return super().call(inputs, training=training, mask=mask)
        images = inputs["images"] if isinstance(inputs, dict) else inputs
        x = self.embedding(images, training=training)
        x = self.drop_patches(x)
        x = self.pre_layer_norm(x, training=training)
        intermediate = None
        for i, block in enumerate(self.encoder_layers):
            x = block(x, training=training)
            if i == self.intermediate_output_index:
                intermediate = x
        x = self.layer_norm(x, training=training)
        if self.intermediate_output_index is not None:
            return {"sequence_output": x, "intermediate_output": intermediate}
        return x

    def get_config(self):
        config = super().get_config()
        config.update({"patch_dropout": self.patch_dropout, "seed": self.seed})
        return config
