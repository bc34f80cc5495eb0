import warnings

import keras
from keras import ops

from keras_clip.models import presets
from keras_clip.models.contrastive_training import ContrastiveTraining
from keras_clip.models.end_token_pooling import EndTokenPooling
from keras_clip.models.feature_queue import FeatureQueue
from keras_clip.models.input_checks import (
    UNIT_RANGE_WARNING,
    check_images,
    check_token_ids,
    looks_scaled_to_unit_range,
    unpack_inputs,
)
from keras_clip.models.logit_scale import LogitScale
from keras_clip.models.momentum import frozen_copy, momentum_keys, resolve_momentum, update_momentum
from keras_clip.models.fused_block import use_fused_blocks
from keras_clip.models.patch_embedding import use_matmul_patch_embedding
from keras_clip.models.projection_head import make_head
from keras_clip.utils.backend import is_concrete

# OpenAI CLIP's pixel statistics (on 0..1 pixels).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@keras.saving.register_keras_serializable(package="keras_clip")
class CLIP(ContrastiveTraining, keras.Model):
    """A CLIP dual encoder trained with a contrastive loss.

    Images go through `image_encoder` (a ViT returning `(B, 1 + P, W)`
    tokens, class token first), texts through `text_encoder` (a causal
    transformer returning `(B, T, W)`). The class token and the end-of-text
    token are projected by the heads into one `embed_dim` space and
    L2-normalised. One learnable log-temperature `t` turns cosine
    similarities into logits: `logits = exp(t) * img @ txt.T`.

    Inputs are a dict `{"images": (B, H, W, 3), "token_ids": (B, T) int}`
    and optionally `"labels": (B,) int` (read by label-aware losses, ignored
    by the forward pass). Images are pixel values in `[0, 255]`, uint8 or
    float; the model divides by 255 and applies `image_mean` / `image_std`
    itself (do not normalise them beforehand).

    `call` returns a dict: `image_embeddings` and `text_embeddings`
    (float32, L2-normalised, `(B, embed_dim)`), `logit_scale` (float32
    scalar, `exp(t)`), `logit_bias` when built with one, and, when
    `return_tokens` is set (token-level losses set it), `image_tokens`
    `(B, P, embed_dim)`, `text_tokens` `(B, T, embed_dim)` (normalised per
    token, global tokens excluded) and `text_token_mask` `(B, T)`.

    Training: `compile(optimizer, loss=...)` takes any `keras_clip.losses`
    objective (default: symmetric InfoNCE); the model's `compute_loss`
    evaluates it in float32, on every backend, and `fit` logs the loss, the
    logit scale and the in-batch top-1 accuracy in both directions.

    Args:
        image_encoder: keras.Model. Images (normalised) -> `(B, 1 + P, Wi)`.
            Its input must be named `"images"`; `image_shape` is read from it.
        text_encoder: keras.Model. `token_ids` -> `(B, T, Wt)`.
        embed_dim: int. Size of the shared embedding space.
        end_token_id: int. Id of the end-of-text token (text pooling).
        pad_token_id: int. Id of padding. Defaults to 0.
        start_token_id: optional int. Id of the start token (excluded from
            token-level features).
        image_head, text_head: `"linear"` (CLIP), `"mlp"`, a dict of
            `ProjectionHead` arguments, or a layer.
        logit_scale_init: float. Initial `exp(t)`. Defaults to `1 / 0.07`.
        logit_scale_max: float. Upper clamp of `exp(t)`. Defaults to 100.
        learn_logit_scale: bool. False freezes the temperature.
        logit_bias_init: optional float. Adds a learnable logit bias (SigLIP).
        image_mean, image_std: per-channel statistics on 0..1 pixels.
        return_tokens: bool. Also return token-level features.
        queue_size: int. If > 0, keep a `FeatureQueue` of the last
            `queue_size` image and text embeddings; the training step passes
            it to the loss (as `image_queue`, `text_queue`, `queue_valid`)
            and then enqueues the batch (MoCo's view; see the `queue` config).
        momentum: optional float `m` in [0, 1), e.g. 0.999 (MoCo). Keeps a
            non-trainable copy of both towers and heads whose weights follow
            the trained ones as an exponential moving average,
            `k <- m k + (1 - m) q`, updated at the start of every training
            step. The loss then also receives the copies' embeddings of the
            batch as `image_keys` / `text_keys` (constants: stop-gradient),
            and the queue stores those keys instead of the trained towers'
            embeddings. True means 0.999; None (default): no momentum copy.
        tokenizer: optional tokenizer layer stored with the model (so a
            `.keras` file carries it).

    Example:
    ```python
    model = keras_clip.CLIP.from_preset("shapes-tiny", vocabulary_size=100)
    model.compile(optimizer="adamw")
    model.fit(dataset, epochs=1)  # dataset yields {"images", "token_ids"}
    ```

    Reference: Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", ICML 2021.
    """

    def __init__(
        self,
        image_encoder,
        text_encoder,
        embed_dim=512,
        end_token_id=None,
        pad_token_id=0,
        start_token_id=None,
        image_head="linear",
        text_head="linear",
        logit_scale_init=1.0 / 0.07,
        logit_scale_max=100.0,
        learn_logit_scale=True,
        logit_bias_init=None,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        return_tokens=False,
        queue_size=0,
        momentum=None,
        tokenizer=None,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)
        if end_token_id is None:
            if tokenizer is None or not hasattr(tokenizer, "end_token_id"):
                raise ValueError(
                    "CLIP needs end_token_id (the id of the end-of-text token the "
                    "text is pooled at); pass end_token_id=... or a tokenizer."
                )
            end_token_id = tokenizer.end_token_id
        image_shape = tuple(image_encoder.input_shape[1:]) if not isinstance(
            image_encoder.input_shape, dict
        ) else tuple(image_encoder.input_shape["images"][1:])

        # === Layers ===
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        image_width = image_encoder.output_shape[-1]
        text_width = text_encoder.output_shape[-1]
        self.image_head = make_head(image_head, embed_dim, self.dtype_policy, "image_head")
        self.text_head = make_head(text_head, embed_dim, self.dtype_policy, "text_head")
        self.text_pooling = EndTokenPooling(end_token_id, pad_token_id, name="text_pooling")
        self.logit_scale = LogitScale(
            init_scale=logit_scale_init,
            max_scale=logit_scale_max,
            learnable=learn_logit_scale,
            bias_init=logit_bias_init,
            name="logit_scale",
        )
        self.tokenizer = tokenizer
        self.queue = None
        if queue_size:
            self.queue = FeatureQueue(queue_size, embed_dim, name="queue")
            self.queue.build()
        presets.fix_position_ids(image_encoder)
        use_matmul_patch_embedding(image_encoder)
        use_fused_blocks(image_encoder)
        use_fused_blocks(text_encoder)
        self.image_head.build((None, image_width))
        self.text_head.build((None, text_width))
        self.logit_scale.build()
        momentum = resolve_momentum(momentum)
        if momentum is not None:
            self.momentum_image_encoder = frozen_copy(image_encoder, "momentum_image_encoder")
            self.momentum_text_encoder = frozen_copy(text_encoder, "momentum_text_encoder")
            use_fused_blocks(self.momentum_image_encoder)
            use_fused_blocks(self.momentum_text_encoder)
            self.momentum_image_head = frozen_copy(self.image_head, "momentum_image_head", (None, image_width))
            self.momentum_text_head = frozen_copy(self.text_head, "momentum_text_head", (None, text_width))

        # === Training metrics (updated in compute_metrics) ===
        self.image_to_text_accuracy = keras.metrics.Mean(name="i2t_acc")
        self.text_to_image_accuracy = keras.metrics.Mean(name="t2i_acc")
        self.logit_scale_tracker = keras.metrics.Mean(name="logit_scale")

        # === Config ===
        self.image_shape = image_shape
        self.embed_dim = int(embed_dim)
        self.end_token_id = int(end_token_id)
        self.pad_token_id = int(pad_token_id)
        self.start_token_id = None if start_token_id is None else int(start_token_id)
        self.image_head_spec = image_head if not isinstance(image_head, keras.layers.Layer) else None
        self.text_head_spec = text_head if not isinstance(text_head, keras.layers.Layer) else None
        self.logit_scale_init = float(logit_scale_init)
        self.logit_scale_max = float(logit_scale_max)
        self.learn_logit_scale = bool(learn_logit_scale)
        self.logit_bias_init = None if logit_bias_init is None else float(logit_bias_init)
        self.image_mean = tuple(float(m) for m in image_mean)
        self.image_std = tuple(float(s) for s in image_std)
        self.return_tokens = bool(return_tokens)
        self.queue_size = int(queue_size)
        self.momentum = momentum
        self.contrastive_loss = None
        self._per_example_outputs = False
        self._pixel_range_checked = False
        self.built = True

    # ------------------------------------------------------------------ inputs
    @property
    def vocabulary_size(self):
        return int(self.text_encoder.vocabulary_size) if hasattr(
            self.text_encoder, "vocabulary_size"
        ) else None

    @property
    def context_length(self):
        return getattr(self.text_encoder, "max_sequence_length", None)

    def _check_images(self, images):
        check_images(images, self.image_shape)
        self._warn_unit_range(images)

    def _warn_unit_range(self, images):
        if not getattr(self, "_pixel_range_checked", True):
            # The first concrete batch only: a cheap look, once per model.
            if is_concrete(images):
                self._pixel_range_checked = True
                if looks_scaled_to_unit_range(images):
                    warnings.warn(UNIT_RANGE_WARNING, stacklevel=3)

    def _check_token_ids(self, token_ids):
        check_token_ids(token_ids, self.context_length, self.vocabulary_size)

    def _unpack(self, inputs):
        images, token_ids = unpack_inputs(inputs, self.image_shape, self.context_length, self.vocabulary_size)
        self._warn_unit_range(images)
        return images, token_ids

    # ---------------------------------------------------------------- encoders
    def _image_tokens(self, images, training=None, encoder=None):
        """Normalised pixels -> the image tower's tokens, `(B, 1 + P, Wi)`."""
        x = ops.cast(images, self.compute_dtype) / 255.0
        mean = ops.convert_to_tensor(self.image_mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.image_std, dtype=self.compute_dtype)
        x = (x - mean) / std  # (B, H, W, 3)
        encoder = encoder or self.image_encoder
        # A locked (frozen) tower runs in inference mode.
        return encoder({"images": x}, training=training if encoder.trainable else False)

    def _text_tokens(self, token_ids, training=None):
        training = training if self.text_encoder.trainable else False  # a locked tower: inference mode
        return self.text_encoder({"token_ids": token_ids}, training=training)  # (B, T, Wt)

    @staticmethod
    def _l2_normalize(x):
        x = ops.cast(x, "float32")
        return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))

    def encode_image(self, images, normalize=True, training=False):
        """Image embeddings `(B, embed_dim)`, float32.

        Args:
            images: `(B, H, W, 3)` pixels in `[0, 255]` (uint8 or float). The
                model applies `/255` and `image_mean` / `image_std` itself.
            normalize: bool. L2-normalise the embeddings (default True).
        """
        self._check_images(images)
        sequence = self._image_tokens(images, training=training)
        features = self.image_head(sequence[:, 0], training=training)  # (B, D)
        return self._l2_normalize(features) if normalize else ops.cast(features, "float32")

    def encode_text(self, token_ids, normalize=True, training=False):
        """Text embeddings `(B, embed_dim)`, float32, from `(B, T)` int token ids."""
        self._check_token_ids(token_ids)
        sequence = self._text_tokens(token_ids, training=training)
        pooled = self.text_pooling(sequence, token_ids)  # (B, Wt)
        features = self.text_head(pooled, training=training)  # (B, D)
        return self._l2_normalize(features) if normalize else ops.cast(features, "float32")

    def text_token_mask(self, token_ids):
        """True at content tokens: not padding, not start, not end-of-text. `(B, T)`."""
        mask = ops.logical_and(
            ops.not_equal(token_ids, self.pad_token_id), ops.not_equal(token_ids, self.end_token_id)
        )
        if self.start_token_id is not None:
            mask = ops.logical_and(mask, ops.not_equal(token_ids, self.start_token_id))
        return mask

    def call(self, inputs, training=None):
        images, token_ids = self._unpack(inputs)
        image_sequence = self._image_tokens(images, training=training)  # (B, 1 + P, Wi)
        text_sequence = self._text_tokens(token_ids, training=training)  # (B, T, Wt)
        image_features = self.image_head(image_sequence[:, 0], training=training)  # (B, D)
        text_pooled = self.text_pooling(text_sequence, token_ids)  # (B, Wt)
        text_features = self.text_head(text_pooled, training=training)  # (B, D)
        outputs = {
            "image_embeddings": self._l2_normalize(image_features),
            "text_embeddings": self._l2_normalize(text_features),
        }
        if not self._per_example_outputs:
            outputs["logit_scale"] = self.logit_scale()
            if self.logit_scale.logit_bias is not None:
                outputs["logit_bias"] = self.logit_scale.bias()
        if self.return_tokens:
            image_tokens = self.image_head(image_sequence[:, 1:], training=training)  # (B, P, D)
            text_tokens = self.text_head(text_sequence, training=training)  # (B, T, D)
            outputs["image_tokens"] = self._l2_normalize(image_tokens)
            outputs["text_tokens"] = self._l2_normalize(text_tokens)
            outputs["text_token_mask"] = self.text_token_mask(token_ids)
        if "image_views" in inputs:
            outputs["image_views"] = self.encode_image(inputs["image_views"], training=training)
        return outputs

    # ---------------------------------------------------------------- momentum
    def update_momentum_encoders(self):
        """One EMA step of the key towers: `k <- m k + (1 - m) q` (no
        gradient). Returns the twins' new values."""
        return update_momentum(self)

    def encode_keys(self, images, token_ids):
        """The momentum towers' image and text embeddings (L2-normalised,
        float32, stop-gradient): the keys MoCo contrasts queries against."""
        return momentum_keys(self, images, token_ids)

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "image_encoder": keras.saving.serialize_keras_object(self.image_encoder),
            "text_encoder": keras.saving.serialize_keras_object(self.text_encoder),
            "embed_dim": self.embed_dim,
            "end_token_id": self.end_token_id,
            "pad_token_id": self.pad_token_id,
            "start_token_id": self.start_token_id,
            "image_head": self.image_head_spec
            if self.image_head_spec is not None
            else keras.saving.serialize_keras_object(self.image_head),
            "text_head": self.text_head_spec
            if self.text_head_spec is not None
            else keras.saving.serialize_keras_object(self.text_head),
            "logit_scale_init": self.logit_scale_init,
            "logit_scale_max": self.logit_scale_max,
            "learn_logit_scale": self.learn_logit_scale,
            "logit_bias_init": self.logit_bias_init,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "return_tokens": self.return_tokens,
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "tokenizer": None
            if self.tokenizer is None
            else keras.saving.serialize_keras_object(self.tokenizer),
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
        }
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("image_encoder", "text_encoder", "tokenizer"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        for key in ("image_head", "text_head"):
            value = config.get(key)
            if isinstance(value, dict) and "class_name" in value:
                config[key] = keras.saving.deserialize_keras_object(value)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)

    @classmethod
    def from_preset(cls, name_or_path, **overrides):
        """Builds a model from a named architecture, a YAML file, a run
        directory or a pretrained checkpoint.

        Args:
            name_or_path: one of
                - a preset name (`keras_clip.list_presets()`: `"vit-b-32"`,
                  `"vit-b-16"`, `"vit-l-14"`, `"shapes"`, ...) or a YAML config
                  path (its `model:` section): a new, randomly initialised model;
                - a directory written by `keras-clip train` or `keras-clip
                  convert` (loads `model.keras` with its weights);
                - a pretrained checkpoint, whatever `keras-clip convert`
                  accepts: an OpenAI / open_clip state dict (`.pt`, `.bin`,
                  `.safetensors`), a Hugging Face `CLIPModel` folder, a keras-hub
                  CLIP preset folder, name (`"clip_vit_base_patch32"`) or
                  handle (`"kaggle://..."`; keras-hub downloads it). Imported by
                  `keras_clip.pretrained.load_checkpoint`, with OpenAI's BPE
                  tokenizer attached when the vocabulary is OpenAI's.
            **overrides: for a preset name or YAML file, model config keys to
                change. A key that exists in one tower only may be given bare
                (`vocabulary_size=100`); a key of both towers needs its dotted
                name (`image_encoder.width=16`). `tokenizer=` attaches a
                tokenizer. For a checkpoint: `activation="quick_gelu"` (the
                default, OpenAI's weights) or `"gelu"` (most LAION weights),
                used for state dicts, which do not record it; `tokenizer=`
                (default `"auto"`); `vision_heads=` / `text_heads=`.

        Example:
        ```python
        model = keras_clip.CLIP.from_preset("ViT-B-32.pt")  # OpenAI's file
        model = keras_clip.CLIP.from_preset("laion.safetensors", activation="gelu")
        ```
        """
        kind = presets.preset_kind(name_or_path)
        if kind == "run":
            return presets.load_run_model(name_or_path)
        if kind == "checkpoint":
            return presets.load_checkpoint_model(name_or_path, **overrides)
        return cls(**presets.clip_arguments_from_preset(name_or_path, **overrides))
