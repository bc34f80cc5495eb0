"""A rerun never destroys a finished run; a killed run resumes only with its
own settings; one run per directory; damaged resume state is named."""

import json
import os
import subprocess
import sys

import keras
import pytest

from keras_clip.config import load_config, save_config
from keras_clip.train import guard, train
from keras_clip.train.loop import resumed_epoch
from keras_clip.train.train import resolve_auto_settings


def _resolved(name, overrides):
    """The config as `train` hands it to the guard: `auto` values chosen."""
    return resolve_auto_settings(load_config(name, overrides))[0]

TINY = {
    "training": {"epochs": 1, "batch_size": 16},
    "data": {"train_examples": 32, "test_examples": 16, "heldout_examples": 16},
    "model": {"image_encoder": {"layers": 1}, "text_encoder": {"layers": 1}},
    "eval": {"every_epochs": 0},
}


def _with(epochs, **training):
    return {**TINY, "training": {**TINY["training"], "epochs": epochs, **training}}


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_finished_run_is_refused_continued_or_overwritten(tmp_path):
    run = str(tmp_path / "run")
    train("shapes", run, overrides=_with(1), verbose=0)
    model_file = os.path.join(run, "model.keras")
    before = (os.path.getmtime(model_file), open(os.path.join(run, "metrics.json")).read())

    # Same command again: refused, naming the ways out; nothing touched.
    with pytest.raises(guard.RunDirectoryError) as error:
        train("shapes", run, overrides=_with(1), verbose=0)
    message = str(error.value)
    assert "finished run (1 epochs)" in message and "--overwrite" in message and "--epochs N with N > 1" in message
    assert (os.path.getmtime(model_file), open(os.path.join(run, "metrics.json")).read()) == before

    # Another setting with more epochs: refused too (it would mix settings).
    with pytest.raises(guard.RunDirectoryError, match=r"training.learning_rate: 0.002 -> 0.001"):
        train("shapes", run, overrides=_with(2, learning_rate=0.001), verbose=0)

    # More epochs: continues from the checkpoint of epoch 1 and runs epoch 2 only.
    counter = CountEpochs()
    model, metrics = train("shapes", run, overrides=_with(2), verbose=0, callbacks=[counter])
    assert counter.epochs == [1]
    # The optimizer state came back: 2 steps per epoch, 2 epochs.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    assert len(metrics["history"]["loss"]) == 2 and metrics["epochs"] == 2
    assert os.path.isfile(os.path.join(run, "checkpoints", "epoch-002.weights.h5"))

    # --overwrite: the old run's files go, checkpoints included, then it trains.
    _, metrics = train("shapes", run, overrides=_with(1), verbose=0, overwrite=True)
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["epoch-001.weights.h5"]
    assert len(metrics["history"]["loss"]) == 1


def _killed_run(tmp_path, overrides):
    """A run directory as a run killed after epoch 1 leaves it (state only)."""
    run = tmp_path / "killed"
    (run / "backup").mkdir(parents=True)
    save_config(_resolved("shapes", overrides), str(run / "config.yaml"))
    (run / "backup" / "state.json").write_text(json.dumps({"next_epoch": 1}))
    return str(run)


def test_resume_with_changed_settings_lists_each_change(tmp_path):
    run = _killed_run(tmp_path, _with(3))
    assert guard.prepare(run, _resolved("shapes", _with(3))) == "resume"
    # Evaluation settings do not change the weights: still a resume.
    assert guard.prepare(run, _resolved("shapes", {**_with(3), "eval": {"every_epochs": 1}})) == "resume"
    changed = {**_with(4, learning_rate=0.01, seed=5), "model": {"embed_dim": 32}}
    with pytest.raises(guard.RunDirectoryError) as error:
        guard.prepare(run, _resolved("shapes", changed))
    message = str(error.value)
    for part in ("training.epochs: 3 -> 4", "training.learning_rate: 0.002 -> 0.01", "training.seed: 0 -> 5",
                 "model.embed_dim: 64 -> 32"):
        assert part in message
    assert "--overwrite" in message


@pytest.mark.parametrize("content", ["", "{not json", '{"epoch": 3}'])
def test_damaged_resume_state_names_the_file(tmp_path, content):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "state.json").write_text(content)
    with pytest.raises(ValueError, match=r"state.json' is damaged.*To start the run over, delete"):
        resumed_epoch(str(tmp_path))


def test_lock_refuses_a_second_run_and_takes_over_a_stale_one(tmp_path):
    printed = []
    with guard.RunLock(str(tmp_path), printed.append):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(guard.RunDirectoryError, match=f"in use by another training run \\(pid {os.getpid()}"):
            with guard.RunLock(str(tmp_path)):
                pass
    assert not (tmp_path / ".lock").exists()
    # A lock left by a process that has exited.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"pid": int(dead.stdout), "host": holder["host"], "started": "2026-01-01T00:00:00"}
    (tmp_path / ".lock").write_text(json.dumps(stale))
    with guard.RunLock(str(tmp_path), printed.append):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert len(printed) == 1 and "Taking over the lock" in printed[0] and str(stale["pid"]) in printed[0]


def test_diverging_run_stops_and_saves_nothing(tmp_path):
    run = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match=r"loss became (nan|inf) at epoch 1, step \d+.*No epoch finished"):
        train("shapes", run, overrides=_with(1, learning_rate=1e30, warmup_fraction=0.0), verbose=0)
    assert not os.path.exists(os.path.join(run, "model.keras"))
    assert not os.path.exists(os.path.join(run, "metrics.json"))


@pytest.mark.parametrize(
    "training, match",
    [({"epochs": -2}, r"training.epochs must be >= 1 .*received -2"),
     ({"batch_size": 0}, r"training.batch_size must be >= 2 .*received 0"),
     ({"epochs": "abc"}, r"training.epochs' must be an integer or 'auto' \(the default\); received 'abc'")],
)
def test_settings_that_train_nothing_are_refused_before_any_work(tmp_path, training, match):
    with pytest.raises((TypeError, ValueError), match=match):
        train("shapes", str(tmp_path / "run"), overrides={**TINY, "training": training}, verbose=0)
    assert not os.path.exists(tmp_path / "run")


def test_fewer_records_than_one_batch_is_refused(tmp_path):
    overrides = {**TINY, "data": {**TINY["data"], "train_examples": 10}}
    with pytest.raises(ValueError, match=r"has 10 image-caption records, fewer than one batch.*at most 10"):
        train("shapes", None, overrides=overrides, verbose=0)
