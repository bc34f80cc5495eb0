"""Data-parallel training with global negatives, on the engines Keras has.

`training.distribution` in a config, or `data_parallel()` in a script:

    training:
      distribution: data_parallel            # or, with the layout:
      distribution: {name: data_parallel, layout: local}

    with keras_clip.train.distribution.data_parallel() as layout:
        model = build_clip(...)                # variables made under the scope
        model.compile(optimizer, loss, loss_layout=layout)
        model.fit(dataset)                     # batches of the global batch size

- JAX: `keras.distribution.DataParallel` over every visible device. The
  jitted step is one program over the global batch (sharded over devices),
  so the B x B logits hold every negative; the loss code does nothing
  special and `layout` is not used (XLA partitions the logits). Multi-host:
  with `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator's host:port),
  `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID` set,
  `keras.distribution.initialize()` (`jax.distributed.initialize`) runs
  first; each process reads the same dataset and Keras keeps its share.
- TensorFlow: `tf.distribute.MirroredStrategy` over the local GPUs (or the
  logical CPU devices), or `MultiWorkerMirroredStrategy` when `TF_CONFIG` is
  set. Each replica all-gathers the embeddings before the loss
  (`keras_clip.models.global_negatives`), in the "full" or "local" layout.
- PyTorch: Keras 3.15 has no torch distribution; refused with an error.
"""

import contextlib
import os

import keras

from keras_clip.models.global_negatives import LAYOUTS

NAMES = ("data_parallel",)
_JAX_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")


def parse(spec):
    """`training.distribution` -> None or {"name": "data_parallel", "layout": ...}.

    Accepts None, "data_parallel", or a mapping with `name` and optional
    `layout` ("full", the default, or "local")."""
    if spec is None:
        return None
    received = spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or spec.get("name") not in NAMES:
        raise ValueError(
            f"training.distribution must be null, 'data_parallel' or {{name: data_parallel, layout: full|local}}; "
            f"received {received!r}."
        )
    unknown = sorted(set(spec) - {"name", "layout"})
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in training.distribution; valid keys: ['layout', 'name'].")
    layout = spec.get("layout", "full")
    if layout not in LAYOUTS:
        raise ValueError(f"training.distribution.layout must be one of {list(LAYOUTS)}; received {layout!r}.")
    return {"name": spec["name"], "layout": layout}


def loss_layout(spec):
    """The `CLIP.compile(loss_layout=...)` value for a `training.distribution`."""
    spec = parse(spec)
    return spec["layout"] if spec else "full"


def check_settings(training):
    """Refuses `training.distribution` settings that cannot run, before any work."""
    spec = parse(training.get("distribution"))
    if spec is None:
        return
    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise ValueError(
            f"training.distribution={spec['name']!r} is not available on the {backend} backend: Keras "
            f"{keras.__version__} has no distribution for it. Use KERAS_BACKEND=jax "
            "(keras.distribution.DataParallel) or KERAS_BACKEND=tensorflow (tf.distribute.MirroredStrategy), "
            "or drop training.distribution."
        )
    if int(training.get("micro_batches", 1)) > 1:
        raise ValueError(
            f"training.micro_batches={training['micro_batches']} does not compose with "
            f"training.distribution={spec['name']!r} (the cached-feature step is not replica-aware); "
            "set one of them only."
        )


def _check_batch(batch_size, replicas):
    if batch_size is not None and batch_size % replicas:
        raise ValueError(
            f"training.batch_size={batch_size} does not split evenly over {replicas} data-parallel replicas; "
            f"use a multiple of {replicas}."
        )


def _jax_distribution():
    if any(os.environ.get(name) for name in _JAX_ENV):
        import jax

        if not jax.distributed.is_initialized():
            keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


def tf_strategy_active():
    """True inside a `tf.distribute` strategy's scope (TensorFlow only)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()


def _tf_strategy():
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def replica_count(distribution):
    """Number of data-parallel replicas of a JAX distribution or TF strategy."""
    if hasattr(distribution, "num_replicas_in_sync"):
        return int(distribution.num_replicas_in_sync)
    return len(distribution.device_mesh.devices.reshape(-1))


@contextlib.contextmanager
def data_parallel(layout="full", batch_size=None):
    """Context manager: build, compile and fit the model inside it.

    Yields the loss layout to pass to `CLIP.compile(loss_layout=...)`.
    `batch_size` (the global batch), when given, is checked to split evenly
    over the replicas.
    """
    check_settings({"distribution": {"name": "data_parallel", "layout": layout}})
    if keras.backend.backend() == "jax":
        distribution = _jax_distribution()
        _check_batch(batch_size, replica_count(distribution))
        with distribution.scope():
            yield layout
    else:
        strategy = _tf_strategy()
        _check_batch(batch_size, replica_count(strategy))
        with strategy.scope():
            yield layout


@contextlib.contextmanager
def scope(training):
    """The distribution a `training:` config section asks for (a no-op
    without `training.distribution`)."""
    spec = parse(training.get("distribution"))
    if spec is None:
        yield "full"
        return
    with data_parallel(spec["layout"], batch_size=int(training["batch_size"])) as layout:
        yield layout


@contextlib.contextmanager
def paused():
    """Runs its body without the JAX distribution (a no-op otherwise).

    Evaluation embeds sets whose last batch need not split over the devices
    (Keras' JAX `predict` under `DataParallel` requires it); with the
    distribution paused it runs on the replicated weights unsharded."""
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        yield
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def evaluate_unsharded(callback):
    """The in-training evaluation callback with its `evaluate` run under
    `paused()`; None stays None."""
    if callback is not None and hasattr(callback, "evaluate"):
        evaluate = callback.evaluate

        def unsharded(*args, **kwargs):
            with paused():
                return evaluate(*args, **kwargs)

        callback.evaluate = unsharded
    return callback

