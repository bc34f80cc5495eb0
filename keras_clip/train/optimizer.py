"""The optimizer of a run: AdamW, linear warmup then cosine decay, no weight
decay on biases, norms, embeddings and the temperature (as open_clip does),
and the choice of XLA per backend."""

import math

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


# On TensorFlow, XLA's compile costs a fixed time, 4-14 s more than tracing
# the plain step, and then saves time on every step. Whole `train()` runs
# timed with and without it (benchmarks/jit_crossover.py, 2-core AVX2 CPU,
# session 10, 3-4 runs per size) saved 23-58 ms, 66-127 ms and 0.4-1.0 s per
# step at 0.9, 3.6 and 117 GFLOP per step (shapes at batch 16 and 64,
# small-vit at 64). XLA's run was the shorter one from 235-539, 82-121 and
# 9-26 steps, that is from steps x sqrt(GFLOP per step) = 97-511. (One run at
# batch 16, and one small-vit run over too short a span, 4 to 16 steps, saw no
# saving.) So `auto` asks for TF_XLA_STEPS_AT_1_GFLOP / sqrt(GFLOP per step)
# steps: 1.6x the longest crossover measured, and more for the other sizes
# (846, 423 and 75 steps). Where the step's FLOPs are not known, it asks for
# TF_XLA_MIN_STEPS.
TF_XLA_STEPS_AT_1_GFLOP = 800
TF_XLA_MIN_STEPS = 500


def tf_xla_min_steps(step_flops=None):
    """The run length (optimizer steps) from which `jit_compile: auto` uses
    XLA on TensorFlow, for a step of `step_flops` FLOPs
    (`keras_clip.models.flops.train_step_flops`; None: not known)."""
    if not step_flops:
        return TF_XLA_MIN_STEPS
    return max(1, math.ceil(TF_XLA_STEPS_AT_1_GFLOP / math.sqrt(step_flops / 1e9)))


def resolve_jit_compile(value, steps=None, micro_batches=1, step_flops=None):
    """`"auto"`: XLA on JAX (without it JAX runs op by op); on TensorFlow XLA
    for a run of at least `tf_xla_min_steps(step_flops)` optimizer steps
    (`steps`; bigger steps need fewer), with no `tf.distribute` strategy and
    no micro-batching (not measured under XLA there), and none for shorter
    runs, where the compile would cost more than it saves; never on PyTorch
    (Keras' `torch.compile` path took 239 s to compile the shapes model's
    step and then ran it no faster: 111 against 117 ms).
    `benchmarks/jit_crossover.py` measures the TensorFlow choice."""
    if value != "auto":
        return bool(value)
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend != "tensorflow" or steps is None or int(micro_batches) > 1:
        return False
    if int(steps) < tf_xla_min_steps(step_flops):
        return False
    return not distribution.tf_strategy_active()
