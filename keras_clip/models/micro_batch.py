"""Micro-batched training steps with cached features (GradCache).

A contrastive loss couples every pair of the batch, so splitting a batch of
B into K micro-batches with plain gradient accumulation changes the loss
(each micro-batch only sees B/K - 1 negatives) and, as in open_clip's
`accum_freq`, counts the logit scale's gradient K times. GradCache
(Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup", arXiv:2101.06983) computes the exact full-batch step with
the activation memory of one micro-batch:

1. encode the K chunks without gradients and cache the (B, D) embeddings,
   saving the model's non-trainable state (the dropout seed generators)
   before each chunk;
2. compute the loss over all B (every B x B negative) and its gradient with
   respect to the cached embeddings and the logit scale / bias (the latter
   counted once, here);
3. for each chunk: restore its saved state (so dropout draws the same masks
   as in step 1), re-encode it with gradients and back-propagate the cached
   embedding gradient, `d/dtheta <emb_k(theta), g_k>`; sum the parameter
   gradients over chunks and apply them once.

The loss and the updated weights equal the unsplit step's (up to float
rounding). Use it with `model.compile(..., micro_batches=K)`; B must be a
multiple of K. Objectives that need more than the pooled embeddings of a
chunk (token-level FILIP, a second image view, the queue and momentum
towers) are refused with an error saying why.

Each backend's autodiff is used directly, in one function each below:
TensorFlow `GradientTape`, JAX `stateless_call` + `jax.vjp` inside the
jitted step, PyTorch autograd with `backward(grad_tensors)`.
"""

import keras
from keras import ops

from keras_clip.utils.backend import densify_gradients
from keras_clip.utils.host_memory import trim_host_heap


def check_micro_batches(micro_batches):
    """Validates `micro_batches` (an int >= 1) and returns it."""
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
        raise ValueError(
            f"micro_batches must be an int >= 1 (the number of chunks a batch is "
            f"encoded in); received micro_batches={micro_batches!r}."
        )
    return micro_batches


def _leaf_losses(loss):
    inner = getattr(loss, "losses", None)  # WeightedSum
    if isinstance(inner, (list, tuple)) and inner and all(
        isinstance(l, keras.losses.Loss) for l in inner
    ):
        return [leaf for l in inner for leaf in _leaf_losses(l)]
    return [loss]


def check_supported(model, loss):
    """Raises a ValueError if GradCache cannot serve this model / objective."""
    why = None
    if getattr(model, "queue", None) is not None or getattr(model, "momentum", None) is not None:
        why = (
            "the model keeps a feature queue or momentum towers, which a step "
            "updates from the whole batch while the loss reads them"
        )
    norms = [
        layer.name
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if norms:
        why = (
            f"layer(s) {norms} normalise with batch statistics, which would be "
            "those of each chunk instead of the batch (use layer normalisation)"
        )
    for leaf in _leaf_losses(loss):
        name = type(leaf).__name__
        if getattr(leaf, "needs_tokens", False):
            why = (
                f"{name} contrasts per-token features (B, N, D); GradCache caches "
                "only the pooled (B, D) embeddings of each chunk"
            )
        elif getattr(leaf, "needs_image_views", False):
            why = (
                f"{name} needs a second augmented image view per example, which "
                "the cached step does not encode"
            )
        elif "queue" in name.lower() or "moco" in name.lower():
            why = f"{name} reads a negative queue / momentum keys"
    if why:
        raise ValueError(
            f"micro_batches > 1 (GradCache) cannot train this objective: {why}. "
            "Use micro_batches=1 (and a smaller batch), or an objective over the "
            "pooled embeddings: InfoNCE, DCL, SigLIP, SupCon (or their blockwise "
            "versions)."
        )


def _batch_size(x):
    return next(v for v in keras.tree.flatten(x) if v is not None).shape[0]


def split(x, micro_batches):
    """The K chunks of the input dict `x`, each a dict of (B/K, ...) slices."""
    batch = _batch_size(x)
    if batch is not None and batch % micro_batches:
        raise ValueError(
            f"The batch of {batch} examples cannot be split into micro_batches="
            f"{micro_batches} equal chunks; use a batch size that is a multiple "
            f"of {micro_batches} (e.g. {batch - batch % micro_batches or micro_batches}) "
            "with drop_remainder=True, or change micro_batches."
        )
    if batch is None:  # known only at run time (TensorFlow graphs)
        batch = ops.shape(next(v for v in keras.tree.flatten(x) if v is not None))[0]
    size = batch // micro_batches
    return [
        keras.tree.map_structure(lambda v, k=k: v[k * size : (k + 1) * size], x)
        for k in range(micro_batches)
    ], size


def objective(model, x, y, image_embeddings, text_embeddings):
    """The model's loss over all B cached embeddings (logit scale read here)."""
    y_pred = {
        "image_embeddings": image_embeddings,
        "text_embeddings": text_embeddings,
        "logit_scale": model.logit_scale(),
    }
    if model.logit_scale.logit_bias is not None:
        y_pred["logit_bias"] = model.logit_scale.bias()
    labels = x.get("labels") if isinstance(x, dict) else None
    if labels is None:
        labels = y
    return model.contrastive_loss(labels, y_pred)


def _metrics_pred(outputs, image_embeddings, text_embeddings):
    y_pred = dict(outputs[0])
    y_pred["image_embeddings"] = image_embeddings
    y_pred["text_embeddings"] = text_embeddings
    return y_pred


def _add(total, grads):
    return [
        g if t is None else (t if g is None else t + g) for t, g in zip(total, grads)
    ]


def train_step(model, *args):
    """The GradCache step for `model.train_step(*args)` on the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_step(model, *args)
    if backend == "jax":
        return _jax_step(model, *args)
    if backend == "torch":
        return _torch_step(model, *args)
    raise NotImplementedError(
        f"micro_batches > 1 is implemented for the tensorflow, jax and torch "
        f"backends; the active backend is {backend!r}."
    )


# ------------------------------------------------- returning freed host memory
def release_freed_host_memory(tensor):
    """`trim_host_heap()` when the PyTorch `tensor` lives in host memory; a
    no-op for CUDA tensors, whose memory the caching allocator holds."""
    if tensor.device.type == "cpu":
        trim_host_heap()


# ------------------------------------------------------------------ TensorFlow
def _scalars(model):
    """The per-step (not per-example) outputs the metrics read."""
    out = {"logit_scale": model.logit_scale()}
    if model.logit_scale.logit_bias is not None:
        out["logit_bias"] = model.logit_scale.bias()
    return out


def _tf_next_chunk(model, k, after):
    """`k + 1`, computed once the ops in `after` ran and, on a host-memory
    graph step, the C heap was trimmed (`trim_host_heap`, through a
    `tf.py_function`; XLA cannot compile one, and GPU memory is TensorFlow's
    own allocator's)."""
    import tensorflow as tf

    with tf.control_dependencies(after):
        k = k + 1
    if model.jit_compile or tf.config.list_logical_devices("GPU"):
        return k

    def trim(k):
        trim_host_heap()
        return k

    k = tf.py_function(trim, [k], tf.int32)
    k.set_shape(())
    return k


def _tensorflow_step(model, data):
    # Both passes are `tf.while_loop`s with parallel_iterations=1: as an
    # unrolled Python loop, the graph executor ran the chunks' independent
    # encodings side by side and held every chunk's activations at once.
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    k_chunks = model.micro_batches
    _, size = split(x, k_chunks)  # the divisibility check and its error
    chunks = keras.tree.map_structure(
        lambda v: tf.reshape(v, tf.concat([[k_chunks, -1], tf.shape(v)[1:]], 0)), x
    )

    def chunk_at(k):
        return keras.tree.map_structure(lambda v: v[k], chunks)

    states = model.non_trainable_variables
    saved = [tf.TensorArray(v.dtype, size=k_chunks, element_shape=v.shape) for v in states]

    def encode(k, saved, images, texts):  # 1. encode without gradients
        saved = [ta.write(k, v.value) for ta, v in zip(saved, states)]
        with tf.control_dependencies([ta.flow for ta in saved]):
            out = model(chunk_at(k), training=True)
        images = images.write(k, tf.stop_gradient(out["image_embeddings"]))
        texts = texts.write(k, tf.stop_gradient(out["text_embeddings"]))
        return _tf_next_chunk(model, k, [images.flow, texts.flow]), saved, images, texts

    cache = [tf.TensorArray(model.compute_dtype, size=k_chunks) for _ in range(2)]
    _, saved, images, texts = tf.while_loop(
        lambda k, *_: k < k_chunks, encode, (tf.constant(0), saved, *cache), parallel_iterations=1
    )
    saved = [ta.stack() for ta in saved]
    image = tf.reshape(images.stack(), tf.concat([[-1], tf.shape(images.read(0))[1:]], 0))
    text = tf.reshape(texts.stack(), tf.concat([[-1], tf.shape(texts.read(0))[1:]], 0))
    final = [tf.identity(v.value) for v in states]
    scalars = _scalars(model)  # read before the update, as the unsplit step's outputs are

    weights = model.trainable_variables
    with tf.GradientTape() as tape:  # 2. loss over all B, gradient to the cache
        tape.watch([image, text])
        loss = objective(model, x, y, image, text)
        scaled = model.optimizer.scale_loss(loss)
    *grads, d_image, d_text = tape.gradient(scaled, [*weights, image, text])
    grads = [tf.zeros_like(w) if g is None else g for w, g in zip(weights, densify_gradients(grads))]
    d_image = tf.reshape(d_image, tf.concat([[k_chunks, -1], tf.shape(d_image)[1:]], 0))
    d_text = tf.reshape(d_text, tf.concat([[k_chunks, -1], tf.shape(d_text)[1:]], 0))

    def backward(k, grads):  # 3. re-encode from the saved state, back-propagate the cache
        restore = [v.assign(value[k]) for v, value in zip(states, saved)]
        with tf.control_dependencies(restore):
            with tf.GradientTape() as tape:
                out = model(chunk_at(k), training=True)
                surrogate = tf.reduce_sum(out["image_embeddings"] * d_image[k])
                surrogate += tf.reduce_sum(out["text_embeddings"] * d_text[k])
        chunk_grads = densify_gradients(tape.gradient(surrogate, weights))
        grads = [t if g is None else t + g for t, g in zip(grads, chunk_grads)]
        return _tf_next_chunk(model, k, grads), grads

    _, grads = tf.while_loop(
        lambda k, _: k < k_chunks, backward, (tf.constant(0), grads), parallel_iterations=1
    )
    for v, value in zip(states, final):
        v.assign(value)

    model._loss_tracker.update_state(loss, sample_weight=tf.shape(image)[0])
    model.optimizer.apply_gradients(zip(grads, weights))
    y_pred = {**scalars, "image_embeddings": image, "text_embeddings": text}
    return model.compute_metrics(x, y, y_pred, sample_weight)


# ------------------------------------------------------------------------- JAX
def _stacked(x, micro_batches):
    """The input dict as (K, B/K, ...) arrays: the chunks a `lax.scan` runs over."""
    batch = _batch_size(x)
    split(x, micro_batches)  # the divisibility check and its error
    size = batch // micro_batches
    return keras.tree.map_structure(
        lambda v: v.reshape((micro_batches, size) + tuple(v.shape[1:])), x
    ), size


def _jax_step(model, state, data):
    # Both passes are `jax.lax.scan`s over the stacked chunks: XLA runs one
    # chunk at a time and keeps only the carry (the state, the summed
    # gradients) between them, so the step holds one chunk's activations. As
    # unrolled Python loops the compiled program kept every chunk's alive.
    import jax

    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    chunks, size = _stacked(x, model.micro_batches)

    def encode(states, chunk):  # 1. encode without gradients; keep each chunk's state
        out, new_states = model.stateless_call(trainable, states, chunk, training=True)
        new_states = [n.astype(s.dtype) for n, s in zip(new_states, states)]
        return new_states, (states, out)

    non_trainable, (saved, stacked_out) = jax.lax.scan(encode, list(non_trainable), chunks)
    image = jax.lax.stop_gradient(stacked_out["image_embeddings"].reshape((-1,) + stacked_out["image_embeddings"].shape[2:]))
    text = jax.lax.stop_gradient(stacked_out["text_embeddings"].reshape((-1,) + stacked_out["text_embeddings"].shape[2:]))
    outputs = [keras.tree.map_structure(lambda v: v[0], stacked_out)]

    state_mapping = list(zip(model.non_trainable_variables, non_trainable))
    optimizer_mapping = list(zip(model.optimizer.variables, optimizer_vars))

    def loss_fn(trainable_values, image, text):  # 2. loss over all B
        weights = list(zip(model.trainable_variables, trainable_values))
        with keras.StatelessScope(state_mapping=weights + state_mapping):
            loss = objective(model, x, y, image, text)
        with keras.StatelessScope(state_mapping=optimizer_mapping):
            scaled = model.optimizer.scale_loss(loss)
        return scaled, loss

    (_, loss), (grads, d_image, d_text) = jax.value_and_grad(
        loss_fn, argnums=(0, 1, 2), has_aux=True
    )(trainable, image, text)

    def backward(total, inputs):  # 3. re-encode from the saved state
        chunk, chunk_state, d_image_k, d_text_k = inputs

        def embed(trainable_values):
            out, _ = model.stateless_call(trainable_values, chunk_state, chunk, training=True)
            return out["image_embeddings"], out["text_embeddings"]

        _, vjp = jax.vjp(embed, trainable)
        (chunk_grads,) = vjp((d_image_k, d_text_k))
        return [t + g.astype(t.dtype) for t, g in zip(total, chunk_grads)], None

    k = model.micro_batches
    cache = (d_image.reshape((k, size) + d_image.shape[1:]), d_text.reshape((k, size) + d_text.shape[1:]))
    grads, _ = jax.lax.scan(backward, list(grads), (chunks, saved, *cache))

    trainable, optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, grads, trainable)
    logs, metrics_vars = model._update_metrics_variables(
        metrics_vars, loss, x, y, _metrics_pred(outputs, image, text), sample_weight
    )
    return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)


# --------------------------------------------------------------------- PyTorch
def _torch_step(model, data):
    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    chunks, size = split(x, model.micro_batches)
    states = model.non_trainable_variables
    saved, outputs = [], []
    with torch.no_grad():  # 1. encode without gradients
        for chunk in chunks:
            saved.append([ops.copy(v.value) for v in states])
            outputs.append(model(chunk, training=True))
            release_freed_host_memory(outputs[-1]["image_embeddings"])
    image = torch.cat([o["image_embeddings"] for o in outputs]).detach().requires_grad_(True)
    text = torch.cat([o["text_embeddings"] for o in outputs]).detach().requires_grad_(True)
    final = [ops.copy(v.value) for v in states]

    model.zero_grad()
    loss = objective(model, x, y, image, text)  # 2. loss over all B
    model.optimizer.scale_loss(loss).backward()  # grads: logit scale / bias, cache
    d_image, d_text = image.grad, text.grad

    for k, chunk in enumerate(chunks):  # 3. re-encode, back-propagate the cache
        for v, value in zip(states, saved[k]):
            v.assign(value)
        out = model(chunk, training=True)
        torch.autograd.backward(
            [out["image_embeddings"], out["text_embeddings"]],
            [d_image[k * size : (k + 1) * size], d_text[k * size : (k + 1) * size]],
        )
        del out
        release_freed_host_memory(d_image)
    for v, value in zip(states, final):
        v.assign(value)

    model._loss_tracker.update_state(loss.detach(), sample_weight=image.shape[0])
    weights = model.trainable_weights[:]
    with torch.no_grad():
        model.optimizer.apply([v.value.grad for v in weights], weights)
    y_pred = _metrics_pred(outputs, image.detach(), text.detach())
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
