import keras
from keras import ops

from keras_clip.models.end_token_pooling import EndTokenPooling
from keras_clip.models.feature_queue import FeatureQueue
from keras_clip.models.logit_scale import LogitScale
from keras_clip.models.projection_head import ProjectionHead
from keras_clip.utils.backend import densify_gradients, is_concrete

# OpenAI CLIP's pixel statistics (on 0..1 pixels).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# MoCo's EMA decay of the key encoder (arXiv:1911.05722).
MOCO_MOMENTUM = 0.999


def _head(spec, output_dim, dtype, name):
    """A ProjectionHead from a layer, a kind name, or a dict of its arguments."""
    if isinstance(spec, keras.layers.Layer):
        return spec
    if spec is None or isinstance(spec, str):
        spec = {"kind": spec or "linear"}
    spec = dict(spec)
    spec.setdefault("output_dim", output_dim)
    return ProjectionHead(**spec, dtype=dtype, name=name)


def _frozen_copy(layer, name, input_shape=None):
    """A non-trainable twin of `layer` (same config) holding its current weights."""
    config = layer.get_config()
    config["name"] = name
    copy = layer.__class__.from_config(config)
    if not copy.built:
        copy.build(input_shape)
    if len(copy.weights) != len(layer.weights):
        raise ValueError(
            f"Cannot make a momentum copy of layer {layer.name!r}: the copy built from its "
            f"config has {len(copy.weights)} weights, the layer {len(layer.weights)}."
        )
    for target, source in zip(copy.weights, layer.weights):
        # Through NumPy: a buffer of its own (JAX donates variable buffers to
        # the jitted step, and one buffer must not back two variables).
        target.assign(ops.convert_to_numpy(source.value))
    copy.trainable = False
    return copy


def _fix_position_ids(image_encoder):
    """keras-hub 0.32's `CLIPVisionEmbedding` creates its `position_ids` as
    zeros and relies on pretrained checkpoints to overwrite them with
    0..P. Randomly initialised, every patch would read position embedding 0:
    a ViT with no idea where a patch is. Set them to 0..P (a saved model's
    weights, loaded afterwards, carry the same values)."""
    embedding = getattr(image_encoder, "embedding", None)
    position_ids = getattr(embedding, "position_ids", None)
    if position_ids is None:
        return
    values = ops.convert_to_numpy(position_ids)
    if values.size > 1 and not values.any():
        position_ids.assign(ops.cast(ops.arange(values.size)[None, :], position_ids.dtype))


@keras.saving.register_keras_serializable(package="keras_clip")
class CLIP(keras.Model):
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
        self.image_head = _head(image_head, embed_dim, self.dtype_policy, "image_head")
        self.text_head = _head(text_head, embed_dim, self.dtype_policy, "text_head")
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
        _fix_position_ids(image_encoder)
        self.image_head.build((None, image_width))
        self.text_head.build((None, text_width))
        self.logit_scale.build()
        if momentum is True:
            momentum = MOCO_MOMENTUM
        elif momentum is False:
            momentum = None
        if momentum is not None:
            momentum = float(momentum)
            if not 0.0 <= momentum < 1.0:
                raise ValueError(
                    f"momentum must be in [0, 1) (the EMA decay of the key encoder, e.g. "
                    f"0.999); received momentum={momentum}. Use None for no momentum copy."
                )
            self.momentum_image_encoder = _frozen_copy(image_encoder, "momentum_image_encoder")
            self.momentum_text_encoder = _frozen_copy(text_encoder, "momentum_text_encoder")
            self.momentum_image_head = _frozen_copy(self.image_head, "momentum_image_head", (None, image_width))
            self.momentum_text_head = _frozen_copy(self.text_head, "momentum_text_head", (None, text_width))

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
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(
                f"images must have shape (batch, height, width, 3) with RGB channels last; "
                f"received shape {shape}. Grey images need 3 channels (repeat the "
                f"channel), RGBA images need their alpha dropped."
            )
        expected = self.image_shape[:2]
        if None not in shape[1:3] and tuple(shape[1:3]) != tuple(expected):
            raise ValueError(
                f"images are {shape[1]}x{shape[2]} but this model expects "
                f"{expected[0]}x{expected[1]}; resize (and centre-crop) them first, "
                f"e.g. with keras.layers.Resizing({expected[0]}, {expected[1]}, "
                f"crop_to_aspect_ratio=True)."
            )

    def _check_token_ids(self, token_ids):
        shape = tuple(token_ids.shape)
        if len(shape) != 2:
            raise ValueError(
                f"token_ids must have shape (batch, sequence_length); received shape {shape}. "
                f"Tokenize a list of captions (model.tokenizer(list_of_strings))."
            )
        dtype = keras.backend.standardize_dtype(token_ids.dtype)
        if "int" not in dtype:
            raise TypeError(
                f"token_ids must be integers; received dtype {dtype}. Token ids index "
                f"an embedding table: cast them with ops.cast(token_ids, 'int32') or "
                f"produce them with the model's tokenizer."
            )
        context = self.context_length
        if context is not None and shape[1] is not None and shape[1] > context:
            raise ValueError(
                f"token_ids have {shape[1]} positions but the text encoder's context "
                f"length is {context}; tokenize with context_length={context}."
            )
        vocab = self.vocabulary_size
        if vocab is not None and is_concrete(token_ids):
            values = ops.convert_to_numpy(token_ids)
            if values.size and (values.max() >= vocab or values.min() < 0):
                bad = values.max() if values.max() >= vocab else values.min()
                raise ValueError(
                    f"token_ids contain id {int(bad)} but the vocabulary has {vocab} "
                    f"entries (valid ids 0..{vocab - 1}); tokenize with the tokenizer "
                    f"this model was built for."
                )

    def _unpack(self, inputs):
        if not isinstance(inputs, dict):
            raise TypeError(
                "CLIP takes a dict {'images': ..., 'token_ids': ...}; received "
                f"{type(inputs).__name__}. For one modality use encode_image / encode_text."
            )
        missing = [k for k in ("images", "token_ids") if k not in inputs]
        if missing:
            raise KeyError(
                f"CLIP inputs lack {missing}; received keys {sorted(inputs)}. "
                "Expected {'images': (B, H, W, 3), 'token_ids': (B, T)[, 'labels': (B,)]}."
            )
        images, token_ids = inputs["images"], inputs["token_ids"]
        self._check_images(images)
        self._check_token_ids(token_ids)
        b_img, b_txt = images.shape[0], token_ids.shape[0]
        if b_img is not None and b_txt is not None and b_img != b_txt:
            raise ValueError(
                f"images has batch {b_img} but token_ids has batch {b_txt}; each image "
                "needs exactly one caption (pair them before batching)."
            )
        return images, token_ids

    # ---------------------------------------------------------------- encoders
    def _image_tokens(self, images, training=None, encoder=None):
        """Normalised pixels -> the image tower's tokens, `(B, 1 + P, Wi)`."""
        x = ops.cast(images, self.compute_dtype) / 255.0
        mean = ops.convert_to_tensor(self.image_mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.image_std, dtype=self.compute_dtype)
        x = (x - mean) / std  # (B, H, W, 3)
        return (encoder or self.image_encoder)({"images": x}, training=training)

    def _text_tokens(self, token_ids, training=None):
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
    def _momentum_pairs(self):
        """(trained variable, its moving-average twin) for every float weight."""
        for online, twin in (
            (self.image_encoder, self.momentum_image_encoder),
            (self.text_encoder, self.momentum_text_encoder),
            (self.image_head, self.momentum_image_head),
            (self.text_head, self.momentum_text_head),
        ):
            for source, target in zip(online.weights, twin.weights):
                if "float" in keras.backend.standardize_dtype(target.dtype):
                    yield source, target

    def update_momentum_encoders(self):
        """One EMA step of the key towers: `k <- m k + (1 - m) q` (no gradient)."""
        if self.momentum is None:
            raise ValueError("This model has no momentum copy; build it with momentum=0.999 (say).")
        m = self.momentum
        for source, target in self._momentum_pairs():
            online = ops.stop_gradient(ops.cast(source.value, target.dtype))
            target.assign(m * target.value + (1.0 - m) * online)

    def encode_keys(self, images, token_ids):
        """The momentum towers' image and text embeddings (L2-normalised,
        float32, stop-gradient): the keys MoCo contrasts queries against."""
        if self.momentum is None:
            raise ValueError("This model has no momentum copy; build it with momentum=0.999 (say).")
        sequence = self._image_tokens(images, training=False, encoder=self.momentum_image_encoder)
        image_keys = self.momentum_image_head(sequence[:, 0], training=False)  # (B, D)
        text_sequence = self.momentum_text_encoder({"token_ids": token_ids}, training=False)
        text_keys = self.momentum_text_head(self.text_pooling(text_sequence, token_ids), training=False)
        return (
            ops.stop_gradient(self._l2_normalize(image_keys)),
            ops.stop_gradient(self._l2_normalize(text_keys)),
        )

    # ---------------------------------------------------------------- training
    def compile(self, optimizer="adamw", loss=None, micro_batches=1, **kwargs):
        """Configures training. `loss`: a `keras_clip.losses` objective, its name,
        a config dict, or None for symmetric InfoNCE. Keras' own `loss=` handling
        is bypassed: the contrastive loss needs the whole output dict.
        `micro_batches=K > 1`: each step encodes the batch in K chunks (GradCache,
        `keras_clip/train/micro_batch.py`), the same step in 1/K of the memory."""
        from keras_clip import losses as clip_losses
        from keras_clip.train import micro_batch

        self.contrastive_loss = clip_losses.get(loss if loss is not None else "infonce")
        self.micro_batches = micro_batch.check_micro_batches(micro_batches)
        if self.micro_batches > 1:
            micro_batch.check_supported(self, self.contrastive_loss)
        needs_tokens = getattr(self.contrastive_loss, "needs_tokens", False)
        if needs_tokens:
            self.return_tokens = True
        super().compile(optimizer=optimizer, loss=None, **kwargs)
        if keras.backend.backend() == "tensorflow":
            # Same Adam step as JAX and PyTorch for embedding tables (see densify_gradients).
            apply = self.optimizer.apply

            def apply_dense(grads, trainable_variables=None):
                return apply(densify_gradients(grads), trainable_variables)

            self.optimizer.apply = apply_dense

    def train_step(self, *args):
        if getattr(self, "micro_batches", 1) > 1:
            from keras_clip.train import micro_batch

            return micro_batch.train_step(self, *args)
        return super().train_step(*args)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and self.contrastive_loss is not None:
            config["loss"] = keras.saving.serialize_keras_object(self.contrastive_loss)
        if config and getattr(self, "micro_batches", 1) > 1:
            config["micro_batches"] = self.micro_batches
        return config

    def compile_from_config(self, config):
        """Re-compiles a loaded model with its saved optimizer and loss."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.contrastive_loss is None:
            raise RuntimeError("Call model.compile(optimizer, loss=...) before training.")
        batch = y_pred["image_embeddings"].shape[0]
        if training and batch == 1:
            raise ValueError(
                "A training batch of size 1 has no negatives, so a contrastive loss "
                "cannot learn from it; use batch_size >= 2 (and drop_remainder=True)."
            )
        labels = x.get("labels") if isinstance(x, dict) else None
        if labels is None and y is not None:
            labels = y
        if self.momentum is not None:
            if training:
                self.update_momentum_encoders()
            image_keys, text_keys = self.encode_keys(x["images"], x["token_ids"])
            y_pred = {**y_pred, "image_keys": image_keys, "text_keys": text_keys}
        if self.queue is not None:
            y_pred = {**y_pred, **self.queue.contents()}
        loss = self.contrastive_loss(labels, y_pred)
        if self.queue is not None and training:
            if self.momentum is not None:
                self.queue.enqueue(y_pred["image_keys"], y_pred["text_keys"])
            else:
                self.queue.enqueue(y_pred["image_embeddings"], y_pred["text_embeddings"])
        if self.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(l, "float32") for l in self.losses]))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        image_embeddings = y_pred["image_embeddings"]
        text_embeddings = y_pred["text_embeddings"]
        similarity = ops.matmul(image_embeddings, ops.transpose(text_embeddings))  # (B, B)
        targets = ops.arange(ops.shape(similarity)[0], dtype="int32")
        i2t = ops.cast(ops.equal(ops.argmax(similarity, axis=1), targets), "float32")
        t2i = ops.cast(ops.equal(ops.argmax(similarity, axis=0), targets), "float32")
        self.image_to_text_accuracy.update_state(ops.mean(i2t))
        self.text_to_image_accuracy.update_state(ops.mean(t2i))
        self.logit_scale_tracker.update_state(y_pred["logit_scale"])
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def predict(self, *args, **kwargs):
        """`predict` returns the per-example outputs only (embeddings, token
        features): Keras concatenates predictions along the batch, which a
        scalar such as `logit_scale` doesn't have. Read it from
        `model.logit_scale()`."""
        self._per_example_outputs = True
        try:
            return super().predict(*args, **kwargs)
        finally:
            self._per_example_outputs = False

    def predict_on_batch(self, x):
        self._per_example_outputs = True
        try:
            return super().predict_on_batch(x)
        finally:
            self._per_example_outputs = False

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
        """Builds a model from a named architecture, a YAML file or a run directory.

        Args:
            name_or_path: a preset name (`keras_clip.presets.list_presets()`:
                `"vit-b-32"`, `"vit-b-16"`, `"vit-l-14"`, `"shapes-tiny"`), a
                YAML config path (its `model:` section), or a directory written
                by `keras-clip train` (loads `model.keras` with its weights).
            **overrides: model config keys to change (e.g. `vocabulary_size`).
        """
        from keras_clip.models.builder import clip_from_preset

        return clip_from_preset(name_or_path, **overrides)
