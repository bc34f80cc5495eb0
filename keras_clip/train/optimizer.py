"""The optimizer of a run: AdamW, linear warmup then cosine decay, no weight
decay on biases, norms, embeddings and the temperature (as open_clip does),
and the choice of XLA per backend."""

import keras

# Variables whose names contain one of these get no weight decay.
NO_DECAY = ["bias", "gamma", "beta", "embedding", "log_scale", "logit_bias"]


def make_optimizer(training_config, steps):
    """AdamW for `steps` optimizer steps, from the `training:` config section
    (`learning_rate`, `warmup_fraction`, `weight_decay`).

    `CLIP.compile` turns it into its dense-gradient variant on TensorFlow
    (`keras_clip.models.dense_gradients`), so that every backend takes the
    same step.
    """
    lr = training_config["learning_rate"]
    if lr is None or isinstance(lr, str):
        raise ValueError(
            f"make_optimizer needs a number for training.learning_rate; received {lr!r}. Choose the automatic "
            "value first with keras_clip.train.defaults.resolve_training (train() does), or set one."
        )
    lr = float(lr)
    warmup = int(round(training_config["warmup_fraction"] * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else lr,
        decay_steps=max(steps - warmup, 1),
        warmup_target=lr if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=float(training_config["weight_decay"]), beta_2=0.98, epsilon=1e-6
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def resolve_jit_compile(value):
    """`"auto"`: XLA on JAX (without it JAX runs op by op), off on TensorFlow and
    PyTorch, where on CPU the small models here train faster without it
    (benchmarks/train_throughput.py measures both)."""
    if value == "auto":
        return keras.backend.backend() == "jax"
    return bool(value)
