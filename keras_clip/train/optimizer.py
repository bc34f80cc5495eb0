"""The optimizer of a run: AdamW, linear warmup then cosine decay, no weight
decay on biases, norms, embeddings and the temperature (as open_clip does),
and the choice of XLA per backend."""

import keras

from keras_clip.train import distribution

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


# On TensorFlow, XLA's compile costs ~7 s more than tracing the plain step
# (13.4 s against 6.0 s for the shapes model on a quiet 2-core AVX2 CPU) and
# then runs each step 1.1-1.6x faster (124 against 193 ms there; issue 13's
# AVX-512 machine: 1.35x on shapes, 1.13x on small-vit). It pays from about a
# hundred steps on; this threshold leaves a margin for CPUs where it gains less.
TF_XLA_MIN_STEPS = 500


def resolve_jit_compile(value, steps=None, micro_batches=1):
    """`"auto"`: XLA on JAX (without it JAX runs op by op); on TensorFlow XLA
    for a run of at least `TF_XLA_MIN_STEPS` optimizer steps (`steps`), with
    no `tf.distribute` strategy and no micro-batching (not measured under XLA
    there), and none below, where the compile would cost more than it saves;
    never on PyTorch (Keras' `torch.compile` path is not measured here).
    `benchmarks/train_throughput.py --jit-compile true|false` measures the two."""
    if value != "auto":
        return bool(value)
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend != "tensorflow" or steps is None or int(steps) < TF_XLA_MIN_STEPS or int(micro_batches) > 1:
        return False
    return not distribution.tf_strategy_active()
