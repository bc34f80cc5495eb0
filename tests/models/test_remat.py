"""Rematerialised transformer blocks (`training.remat`) give the plain step's
loss and updated weights; `set_remat` turns it on and off with clear errors."""

import keras
import numpy as np
import pytest

from keras_clip.models.remat import set_remat, transformer_blocks
from tests.models.conftest import tiny_batch, tiny_clip


def _step(weights, remat):
    model = tiny_clip()
    model.set_weights(weights)
    assert set_remat(model, remat) == 2  # one image block, one text block
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.5),
        jit_compile=False,  # eager: no compile time in the fast suite (benchmarks run it jitted)
    )
    logs = model.train_on_batch(tiny_batch(batch=8, seed=1), return_dict=True)
    return logs, model


# Eager steps: ~10 s on PyTorch; 1-3 min on TensorFlow / JAX on a loaded CPU (slow stage).
@(pytest.mark.slow if keras.backend.backend() != "torch" else (lambda f: f))
def test_remat_step_equals_the_plain_step():
    keras.utils.set_random_seed(0)
    start = tiny_clip().get_weights()
    plain_logs, plain = _step(start, False)
    remat_logs, remat = _step(start, True)
    assert all(block.remat and 'call' in vars(block) for block in transformer_blocks(remat))
    np.testing.assert_allclose(remat_logs["loss"], plain_logs["loss"], rtol=1e-5)
    moved = False
    for before, a, b in zip(start, plain.weights, remat.weights):
        path = b.path
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=path)
        moved = moved or not np.allclose(before, a)
    assert moved, "the step changed no weight"


def test_set_remat_off_and_errors():
    model = tiny_clip()
    set_remat(model, True)
    set_remat(model, False)
    assert all(not block.remat and 'call' not in vars(block) for block in transformer_blocks(model))
    with pytest.raises(ValueError, match="remat must be true or false; received remat='yes'"):
        set_remat(model, "yes")
    with pytest.raises(ValueError, match="found no transformer blocks"):
        set_remat(keras.Sequential([keras.layers.Dense(2)]), True)
