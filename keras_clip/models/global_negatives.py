"""Global negatives in a data-parallel TensorFlow step (`tf.distribute`).

Keras' TensorFlow trainer runs `train_step` once per replica under
`strategy.run`, each on its B_r samples of the global batch, then sums the
replicas' gradients (an all-reduce in the optimizer). A contrastive loss
computed on B_r samples would see only B_r - 1 negatives, so each replica
all-gathers the embeddings (and the labels) first:

- layout "full": every replica computes the loss L over the whole gathered
  B x B matrix and returns L / N (N replicas).
- layout "local": every replica computes only its rows, 2 x (B_r x B)
  logits (`keras_clip.losses.local_block`), whose values sum to L.

Gradients. `ReplicaContext.all_gather`'s gradient all-reduces (sums) the
upstream gradients of the gathered tensor over the replicas and hands each
replica the slice of its own rows. In the full layout every replica's
upstream gradient is the same dL/dE, so each gets N x its share; returning
L / N makes the replicas' summed parameter gradient exactly dL/dtheta, and
the same 1 / N makes the logit scale's gradient (not gathered: every replica
computes all of dL/ds) sum to dL/ds. In the local layout the replicas'
upstream gradients are the pieces of dL/dE, their sum is dL/dE, and the
local values already sum to L. Either way the loss Keras logs (it multiplies
a replica's value by N and averages over replicas) is L, as on one device.

JAX needs none of this: under `keras.distribution.DataParallel` the jitted
step is one program over the global batch.
"""

import keras

LAYOUTS = ("full", "local")
# Model outputs that are one value for the whole batch, not one per example.
_BATCH_CONSTANTS = ("logit_scale", "logit_bias")


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(
            f"loss_layout must be one of {list(LAYOUTS)} ('full': each replica computes the whole "
            f"B x B loss; 'local': only its own B_r x B rows); received loss_layout={layout!r}."
        )
    return layout


def replica_context():
    """The `tf.distribute` replica context of a step running on more than one
    replica (TensorFlow backend), else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def check_supported(model):
    """Objectives that keep state across steps cannot be gathered."""
    if getattr(model, "queue", None) is not None or getattr(model, "momentum", None) is not None:
        raise ValueError(
            "Data-parallel training with global negatives does not support the feature queue or the "
            "momentum key towers (their state would be per replica); build the model with "
            "model.queue_size: 0 and model.momentum: null, or train on one device."
        )


def check_micro_batches(model):
    """Micro-batched steps are refused under a distribution (TensorFlow
    strategy or Keras distribution on JAX): the cached-feature step is not
    replica-aware."""
    distributed = replica_context() is not None
    if not distributed and keras.backend.backend() == "jax":
        distributed = keras.distribution.distribution() is not None
    if distributed and getattr(model, "micro_batches", 1) > 1:
        raise ValueError(
            f"micro_batches={model.micro_batches} does not compose with data-parallel training here "
            "(the cached-feature step is not replica-aware); use micro_batches=1 with a distribution, "
            "or micro-batches on one device."
        )


def gather(context, y_pred, labels):
    """(y_pred, labels) with every per-example tensor all-gathered along the
    batch axis, in replica order; batch constants (logit scale, bias) as they
    are. The gather is differentiable (see the module docstring)."""
    keys = [k for k, v in y_pred.items() if k not in _BATCH_CONSTANTS and v is not None and len(v.shape) >= 1]
    gathered = context.all_gather([y_pred[k] for k in keys], axis=0)
    # Integer labels in a call of their own: TensorFlow keeps int32 tensors in
    # host memory, and one all-gather may not mix host and device tensors.
    labels = None if labels is None else context.all_gather(labels, axis=0)
    return {**y_pred, **dict(zip(keys, gathered))}, labels


def local_offset(context, local_batch):
    """The global index of this replica's first sample (replica order, the
    shards' sizes gathered, so uneven shards are handled)."""
    import tensorflow as tf

    sizes = context.all_gather(tf.reshape(tf.shape(local_batch)[0], [1]), axis=0)  # (N,)
    return tf.reduce_sum(sizes[: context.replica_id_in_sync_group])


def per_replica(value, context):
    """`value` / N: a quantity every replica computes in full (the full-layout
    loss, the regularisers) so that the replicas' summed gradient counts it once."""
    return value / float(context.num_replicas_in_sync)
