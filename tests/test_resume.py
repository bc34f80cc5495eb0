"""A run killed after epoch 1 and started again ends where an uninterrupted run ends."""

import os
import shutil

import keras
import numpy as np
import pytest

from keras_clip.data.sources.base import DataSource
from keras_clip.train import train

TINY = {
    "training": {"epochs": 2, "batch_size": 16},
    "data": {"train_examples": 64, "test_examples": 16, "heldout_examples": 16},
    "model": {"image_encoder": {"layers": 1}, "text_encoder": {"layers": 1}},
}


class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("simulated kill after epoch 1")


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def _kill_and_resume(config, overrides, run_dir):
    """(resumed model, its metrics, epochs run after the restart, loss of epoch 1 before the kill)."""
    first = keras.callbacks.History()
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir, overrides=overrides, verbose=0, callbacks=[first, KillAfterFirstEpoch()])
    counter = CountEpochs()
    resumed, metrics = train(config, run_dir, overrides=overrides, verbose=0, callbacks=[counter])
    return resumed, metrics, counter.epochs, first.history["loss"][0]


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight, straight_metrics = train("shapes", str(tmp_path / "straight"), overrides=TINY, verbose=0)
    resumed, metrics, ran, killed_loss = _kill_and_resume("shapes", TINY, str(tmp_path / "killed"))
    assert ran == [1]  # only epoch 2 ran after the restart
    # The history covers the whole run, the epoch before the kill included.
    assert metrics["history"]["loss"][0] == pytest.approx(killed_loss, rel=1e-6)
    np.testing.assert_allclose(metrics["history"]["loss"], straight_metrics["history"]["loss"], rtol=1e-5)
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.fixture(scope="module")
def png_manifest(tmp_path_factory):
    """16 small PNGs of varied sizes, two captions each (one is drawn per epoch)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue", "yellow"]
    shapes = ["circle", "square", "cross", "star"]
    rows = ["filepath,caption"]
    for i in range(16):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        size = (18 + int(rng.integers(0, 14)), 18 + int(rng.integers(0, 14)))
        Image.fromarray(small).resize(size, Image.BICUBIC).save(root / f"{i}.png")
        rows.append(f"{i}.png,a {colours[i % 4]} {shapes[i // 4]}")
        rows.append(f"{i}.png,the {shapes[i // 4]} is {colours[i % 4]}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return str(root / "train.csv")


FILES_TINY = {
    "training": {"epochs": 2, "batch_size": 8},
    "eval": {"every_epochs": 0},
    "model": {
        "embed_dim": 16,
        "image_encoder": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
        "text_encoder": {"width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    },
}


class SnapshotAfterFirstEpoch(keras.callbacks.Callback):
    """Copies the run's resume state as it is after epoch 1: what a run
    killed (kill -9) right after finishing epoch 1 leaves behind."""

    def __init__(self, run_dir, killed_dir):
        super().__init__()
        self.run_dir, self.killed_dir = run_dir, killed_dir

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            shutil.copytree(os.path.join(self.run_dir, "backup"), os.path.join(self.killed_dir, "backup"))


def _first_batch(dataset):
    return next(iter(dataset.as_numpy_iterator()))


def test_killed_file_run_resumes_to_the_same_weights(png_manifest, tmp_path, monkeypatch):
    """Shuffle order, caption draws and crops of each epoch are keyed by
    (seed, epoch), so the restarted epoch 2 sees the batches of an
    uninterrupted run's epoch 2, not those of a fresh iterator's epoch 1.

    The killed run is the uninterrupted run's state after epoch 1, copied
    (one training run fewer than killing a second run; the shapes test above
    kills a run for real)."""
    built, build = [], DataSource.dataset

    def spy(self, *args, **kwargs):
        dataset = build(self, *args, **kwargs)
        built.append(dataset)
        return dataset

    monkeypatch.setattr(DataSource, "dataset", spy)
    # Evaluated every epoch: on JAX the evaluation caches compiled encoder
    # views on the model, which restoring the state at each epoch's fit choked on.
    overrides = {**FILES_TINY, "data": {"train": png_manifest, "eval": png_manifest}, "eval": {"every_epochs": 1}}
    straight_dir, killed_dir = str(tmp_path / "straight"), str(tmp_path / "killed")
    snapshot = SnapshotAfterFirstEpoch(straight_dir, killed_dir)
    straight, straight_metrics = train("shapes", straight_dir, overrides=overrides, verbose=0, callbacks=[snapshot])
    counter = CountEpochs()
    resumed, metrics = train("shapes", killed_dir, overrides=overrides, verbose=0, callbacks=[counter])
    assert counter.epochs == [1]  # only epoch 2 ran after the restart
    # The history covers the whole run, the epoch before the kill included.
    for key in ("loss", "val_text_to_image_R@5", "val_image_to_text_R@10"):
        assert len(metrics["history"][key]) == 2, key
        np.testing.assert_allclose(metrics["history"][key], straight_metrics["history"][key], rtol=1e-5)
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Each run built one dataset per epoch; epoch 2 differs from epoch 1 (new
    # order, crops and caption draws) and is the same in both runs, however
    # often it is iterated.
    assert len(built) == 3
    epoch1, epoch2, resumed_epoch2 = (_first_batch(d) for d in built)
    assert not np.array_equal(epoch1["images"], epoch2["images"])
    for key in epoch2:
        np.testing.assert_array_equal(epoch2[key], resumed_epoch2[key])
        np.testing.assert_array_equal(epoch2[key], _first_batch(built[1])[key])


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
