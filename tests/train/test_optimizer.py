"""The run's optimizer: the TensorFlow variant evaluates the learning-rate
schedule once per step and takes the same steps as Keras' own AdamW."""

import keras
import numpy as np
import pytest

from keras_clip.models.dense_gradients import dense_gradient_optimizer
from keras_clip.train.optimizer import make_optimizer

TRAINING = {"learning_rate": 0.01, "warmup_fraction": 0.4, "weight_decay": 0.1}


@keras.saving.register_keras_serializable(package="keras_clip_tests")
class CountingSchedule(keras.optimizers.schedules.CosineDecay):
    calls = 0

    def __call__(self, step):
        CountingSchedule.calls += 1
        return super().__call__(step)


def _steps(optimizer, steps=5):
    """Weights of three variables (two decayed, one excluded) after `steps` AdamW steps."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32"), name=name)
                 for shape, name in (((4, 3), "kernel"), ((3,), "bias"), ((5, 2), "kernel_2"))]
    for step in range(steps):
        grads = [keras.ops.convert_to_tensor(rng.normal(size=v.shape).astype("float32")) for v in variables]
        optimizer.apply(grads, variables)
    return [keras.ops.convert_to_numpy(v) for v in variables]


def test_run_optimizer_steps_equal_keras_adamw_over_warmup_and_decay():
    """Same steps as Keras' AdamW with the run's schedule and its weight-decay
    exclusions (the TensorFlow variant once lost the exclusions: biases,
    norms, embeddings and the temperature decayed there only)."""
    plain = make_optimizer(TRAINING, steps=5)
    ours = dense_gradient_optimizer(make_optimizer(TRAINING, steps=5))
    expected, got = _steps(plain), _steps(ours)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)
    assert not np.allclose(expected[0], _steps(keras.optimizers.AdamW(0.01))[0])  # the schedule matters here


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the per-step schedule read is TensorFlow's variant")
def test_schedule_is_evaluated_once_per_step_on_tensorflow():
    def optimizer(cls):
        schedule = CountingSchedule(0.0, decay_steps=3, warmup_target=0.01, warmup_steps=2)
        opt = cls(learning_rate=schedule, weight_decay=0.1)
        return opt

    CountingSchedule.calls = 0
    _steps(optimizer(keras.optimizers.AdamW), steps=2)
    per_variable = CountingSchedule.calls
    CountingSchedule.calls = 0
    _steps(dense_gradient_optimizer(optimizer(keras.optimizers.AdamW)), steps=2)
    assert per_variable > 2 * 2  # Keras alone reads it per variable (weight decay)
    assert CountingSchedule.calls == 2  # once per step


def test_jit_compile_auto_follows_the_backend_and_the_run_length():
    from keras_clip.train.optimizer import TF_XLA_MIN_STEPS, resolve_jit_compile

    assert resolve_jit_compile(True) is True and resolve_jit_compile(False, steps=10**6) is False
    long, short = TF_XLA_MIN_STEPS, TF_XLA_MIN_STEPS - 1
    backend = keras.backend.backend()
    expected_long = {"jax": True, "tensorflow": True, "torch": False}[backend]
    expected_short = backend == "jax"
    assert resolve_jit_compile("auto", steps=long) is expected_long
    assert resolve_jit_compile("auto", steps=short) is expected_short
    assert resolve_jit_compile("auto", steps=long, micro_batches=2) is expected_short
    assert resolve_jit_compile("auto") is expected_short  # run length unknown
    # 4 GFLOP per step: 800 / sqrt(4) = 400 steps; 400 GFLOP: 40 steps.
    assert resolve_jit_compile("auto", steps=400, step_flops=4e9) is expected_long
    assert resolve_jit_compile("auto", steps=399, step_flops=4e9) is expected_short
    assert resolve_jit_compile("auto", steps=40, step_flops=4e11) is expected_long
    assert resolve_jit_compile("auto", steps=39, step_flops=4e11) is expected_short
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
            assert resolve_jit_compile("auto", steps=long) is False
            assert resolve_jit_compile("auto", steps=10**6, step_flops=4e11) is False


def test_tensorflow_xla_run_length_shrinks_with_the_step_size():
    from keras_clip.train.optimizer import TF_XLA_MIN_STEPS, TF_XLA_STEPS_AT_1_GFLOP, tf_xla_min_steps

    assert tf_xla_min_steps(None) == TF_XLA_MIN_STEPS
    assert tf_xla_min_steps(1e9) == TF_XLA_STEPS_AT_1_GFLOP
    assert tf_xla_min_steps(4e9) == -(-TF_XLA_STEPS_AT_1_GFLOP // 2)
    # The sizes benchmarks/jit_crossover.py measured, with the longest of their
    # crossovers: XLA is asked for only beyond each (shapes at batch 16 and 64, small-vit).
    for step_flops, crossover in ((0.9e9, 539), (3.58e9, 121), (116.7e9, 26)):
        assert tf_xla_min_steps(step_flops) > 1.5 * crossover
    assert tf_xla_min_steps(1e18) == 1
