"""The training side of `CLIP`: compile with a contrastive loss, the loss
(with momentum keys and the feature queue), the in-batch accuracies, and
`predict` returning per-example outputs only. A mixin, so that
`models/clip.py` holds the architecture."""

import keras
from keras import ops

from keras_clip import losses as clip_losses
from keras_clip.losses.local_block import local_block_loss
from keras_clip.models import global_negatives
from keras_clip.models import micro_batch
from keras_clip.models.dense_gradients import dense_gradient_optimizer
from keras_clip.utils.backend import run_after


class ContrastiveTraining:
    """Mixin for `CLIP` (a `keras.Model`): see `CLIP`'s docstring, "Training"."""

    def compile(
        self, optimizer="adamw", loss=None, dense_gradients=True, micro_batches=1, loss_layout="full", **kwargs
    ):
        """Configures training.

        Args:
            optimizer: a Keras optimizer, its name or config.
            loss: a `keras_clip.losses` objective, its name, a config dict,
                or None for symmetric InfoNCE. Keras' own `loss=` handling is
                bypassed: the contrastive loss needs the whole output dict.
            micro_batches: int K. With K > 1 each step encodes the batch in K
                chunks without gradients, computes the loss over all B x B
                pairs, then re-encodes chunk by chunk back-propagating the cached
                embedding gradients (GradCache, `keras_clip.models.micro_batch`):
                the same step as K = 1, with the encoders' activations of one
                chunk at a time.
            loss_layout: "full" or "local", used under a TensorFlow
                `tf.distribute` strategy only, where each replica
                all-gathers the embeddings so that its loss uses every
                negative: "full" computes the whole B x B loss on each
                replica, "local" only the replica's own rows (B_r x B;
                InfoNCE, DCL and SigLIP). Same loss and gradients either
                way (`keras_clip.models.global_negatives`).
            dense_gradients: bool. On TensorFlow, densify embedding-table
                gradients before the update so that Adam takes the same step
                as on JAX and PyTorch (`keras_clip.models.dense_gradients`).
            **kwargs: passed to `keras.Model.compile` (`jit_compile`, ...).
        """
        self.contrastive_loss = clip_losses.get(loss if loss is not None else "infonce")
        self.micro_batches = micro_batch.check_micro_batches(micro_batches)
        self.loss_layout = global_negatives.check_layout(loss_layout)
        if self.micro_batches > 1:
            micro_batch.check_supported(self, self.contrastive_loss)
        if getattr(self.contrastive_loss, "needs_tokens", False):
            self.return_tokens = True
        if dense_gradients:
            optimizer = dense_gradient_optimizer(optimizer)
        super().compile(optimizer=optimizer, loss=None, **kwargs)

    def make_train_function(self, force=False):
        if keras.backend.backend() == "tensorflow":
            self._build_optimizer_before_tracing()
        return super().make_train_function(force)

    def _build_optimizer_before_tracing(self):
        """On TensorFlow without a `tf.distribute` strategy, Keras builds the
        optimizer inside the first trace of the train step; creating its
        variables there makes `tf.function` trace the whole step a second
        time (the optimizer's per-variable update twice included: about half
        of the first step's 15-30 s on a 2-core CPU). JAX and PyTorch build it
        before tracing; this does the same here, at the same moment (the
        first fit or train_on_batch), so that a change of `trainable` made
        after compile is still seen."""
        if self.optimizer is None or self.optimizer.built or getattr(self, "_distribute_strategy", None) is not None:
            return
        if all(layer.built for layer in self._flatten_layers()):
            self.optimizer.build(self.trainable_variables)

    def train_step(self, *args):
        if getattr(self, "micro_batches", 1) > 1:
            global_negatives.check_micro_batches(self)
            return micro_batch.train_step(self, *args)
        if self.momentum is not None and keras.backend.backend() == "tensorflow":
            return self._train_step_after_momentum(*args)
        return super().train_step(*args)

    def _train_step_after_momentum(self, *args):
        """TensorFlow: the EMA step of the key towers first, then the whole
        training step ordered after its new values, so that the optimizer
        cannot write a weight before the EMA has consumed its old value (the
        other backends run the EMA inside `compute_loss`, in program order)."""
        new_values = self.update_momentum_encoders()
        self._momentum_stepped = True
        try:
            return run_after(new_values, lambda: super(ContrastiveTraining, self).train_step(*args))
        finally:
            self._momentum_stepped = False

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and self.contrastive_loss is not None:
            config["loss"] = keras.saving.serialize_keras_object(self.contrastive_loss)
        if config and getattr(self, "micro_batches", 1) > 1:
            config["micro_batches"] = self.micro_batches
        if config and getattr(self, "loss_layout", "full") != "full":
            config["loss_layout"] = self.loss_layout
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
        labels = x.get("labels") if isinstance(x, dict) else None
        if labels is None and y is not None:
            labels = y
        # Data parallel on TensorFlow: every replica gathers the global batch
        # (see keras_clip.models.global_negatives for the gradient scaling).
        replicas = global_negatives.replica_context()
        if replicas is not None:
            global_negatives.check_supported(self)
            local_pred = y_pred
            y_pred, labels = global_negatives.gather(replicas, y_pred, labels)
        batch = y_pred["image_embeddings"].shape[0]
        if training and batch == 1:
            raise ValueError(
                "A training batch of size 1 has no negatives, so a contrastive loss "
                "cannot learn from it; use batch_size >= 2 (and drop_remainder=True)."
            )
        if self.momentum is not None:
            if training and not getattr(self, "_momentum_stepped", False):
                self.update_momentum_encoders()
            image_keys, text_keys = self.encode_keys(x["images"], x["token_ids"])
            y_pred = {**y_pred, "image_keys": image_keys, "text_keys": text_keys}
        if self.queue is not None:
            y_pred = {**y_pred, **self.queue.contents()}
        if replicas is None:
            loss = self.contrastive_loss(labels, y_pred)
        elif getattr(self, "loss_layout", "full") == "local":
            offset = global_negatives.local_offset(replicas, local_pred["image_embeddings"])
            loss = local_block_loss(self.contrastive_loss, local_pred, y_pred, offset)
        else:
            loss = global_negatives.per_replica(self.contrastive_loss(labels, y_pred), replicas)
        if self.queue is not None and training:
            if self.momentum is not None:
                self.queue.enqueue(y_pred["image_keys"], y_pred["text_keys"])
            else:
                self.queue.enqueue(y_pred["image_embeddings"], y_pred["text_embeddings"])
        if self.losses:
            extra = ops.sum(ops.stack([ops.cast(l, "float32") for l in self.losses]))
            loss = loss + (extra if replicas is None else global_negatives.per_replica(extra, replicas))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        image_embeddings = y_pred["image_embeddings"]
        text_embeddings = y_pred["text_embeddings"]
        replicas = global_negatives.replica_context()
        if replicas is not None:  # the accuracies of the global batch, as on one device
            image_embeddings, text_embeddings = replicas.all_gather([image_embeddings, text_embeddings], axis=0)
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
