"""A run killed after epoch 1 and started again ends where an uninterrupted run ends."""

import keras
import numpy as np
import pytest

from keras_clip.training import train

TINY = {
    "training": {"epochs": 2, "batch_size": 16},
    "data": {"train_examples": 64, "test_examples": 16, "heldout_examples": 16},
    "model": {"image_encoder": {"layers": 1}, "text_encoder": {"layers": 1}},
}


class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("simulated kill after epoch 1")


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight, _ = train("shapes", str(tmp_path / "straight"), overrides=TINY, verbose=0)
    killed_dir = str(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        train("shapes", killed_dir, overrides=TINY, verbose=0, callbacks=[KillAfterFirstEpoch()])
    resumed, metrics = train("shapes", killed_dir, overrides=TINY, verbose=0)
    assert len(metrics["history"]["loss"]) == 1  # only epoch 2 ran after the restart
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_evaluation_every_epoch_over_many_epochs():
    """A run calls fit once per epoch and evaluates in a callback; under PyTorch a
    predict-wrapper made this overflow the recursion limit after ~10 epochs."""
    overrides = {
        "training": {"epochs": 12, "batch_size": 16},
        "eval": {"every_epochs": 1},
        "data": {"train_examples": 32, "test_examples": 16, "heldout_examples": 16},
        "model": {"image_encoder": {"layers": 1}, "text_encoder": {"layers": 1}},
    }
    _, metrics = train("shapes", None, overrides=overrides, verbose=0)
    assert len(metrics["history"]["loss"]) == 12
    assert len(metrics["history"]["val_zero_shot_top1"]) == 12
