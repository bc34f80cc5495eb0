"""The fit loop of a run: one `fit` call per epoch, each on its own dataset
keyed by (seed, epoch), with the state a killed run resumes from.

Resuming: after every epoch `EpochBackup` writes the weights and optimizer
state (`backup/latest.weights.h5`) and the next epoch's number
(`backup/state.json`); the history so far goes to `backup/history.json`.
Started again with the same arguments, a run restores that state when its
first `fit` begins and goes on from the next epoch, so the result equals an
uninterrupted run. The backup folder is removed when the run ends.
"""

import json
import math
import os
import re
import shutil
import warnings

import keras

from keras_clip.data.bad_records import BadRecordError
from keras_clip.data.pipeline import for_one_epoch
from keras_clip.train.run_dir import backup_dir, write_json

WEIGHTS_FILE = "latest.weights.h5"
STATE_FILE = "state.json"
HISTORY_FILE = "history.json"


def _damaged(path, error):
    run_dir = os.path.dirname(os.path.dirname(path))
    return ValueError(
        f"The resume state {path!r} is damaged ({type(error).__name__}: {error}). To start the run over, "
        f"delete {os.path.dirname(path)!r} (or pass --overwrite, which removes the whole earlier run in "
        f"{run_dir!r})."
    )


_BAD_RECORD = re.compile(r"BadRecordError: (.*)")


def _bad_record_in(error):
    """A strict-mode bad record raised inside tf.data reaches `fit` wrapped in
    TensorFlow's error with a Python traceback; return its one line, or None."""
    match = _BAD_RECORD.search(str(error))
    return match.group(1).strip() if match else None


def resumed_epoch(output_dir):
    """The epoch a killed run restarts at (0 for a fresh run)."""
    path = os.path.join(backup_dir(output_dir), STATE_FILE) if output_dir else None
    if not path or not os.path.exists(path):
        return 0
    try:
        with open(path) as f:
            return int(json.load(f)["next_epoch"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _damaged(path, error) from None


class EpochBackup(keras.callbacks.Callback):
    """Writes the resume state after every epoch; with `restore`, loads it
    when the first `fit` begins (the optimizer is built by then, so its
    moments come back too). Later `fit` calls of the run go on from the
    weights in memory.

    With a `checkpoint_pattern` (a path with `{epoch:03d}`), the epoch's
    weights are saved once, to that per-epoch checkpoint, and the resume
    copy is a file copy of it: Keras' `save_weights` walks every layer and
    costs far more than copying the file it wrote.
    """

    def __init__(self, directory, restore=False, checkpoint_pattern=None):
        super().__init__()
        self.directory = directory
        self.restore = restore
        self.checkpoint_pattern = checkpoint_pattern

    @property
    def weights_path(self):
        return os.path.join(self.directory, WEIGHTS_FILE)

    def on_train_begin(self, logs=None):
        if self.restore:
            self.restore = False
            optimizer = self.model.optimizer
            if optimizer is not None and not optimizer.built:
                # Its moments must exist to receive the saved ones.
                optimizer.build(self.model.trainable_variables)
            try:
                self.model.load_weights(self.weights_path)
            except Exception as error:  # h5py's and Keras' errors alike
                raise _damaged(self.weights_path, error) from None

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        partial = os.path.join(self.directory, "partial.weights.h5")
        if self.checkpoint_pattern:
            checkpoint = self.checkpoint_pattern.format(epoch=int(epoch) + 1)
            os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
            self.model.save_weights(checkpoint, overwrite=True)
            shutil.copyfile(checkpoint, partial)
        else:
            self.model.save_weights(partial)
        os.replace(partial, self.weights_path)
        write_json(os.path.join(self.directory, STATE_FILE), {"next_epoch": int(epoch) + 1})


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss is NaN or inf."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, with an error naming the
    epoch, the step and the last good checkpoint. (Keras' `TerminateOnNaN`
    stops quietly, and the run would then be evaluated and saved.)

    `async_safe`: on JAX and PyTorch Keras may run the per-step hooks in a
    worker thread, so reading the loss does not stall the next step's
    dispatch; the error then surfaces at the next step or at the epoch's
    end, before anything of the epoch is saved.
    """

    async_safe = True

    def __init__(self, output_dir=None):
        super().__init__()
        self.output_dir = output_dir
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        last = None
        if self.output_dir and self.epoch:
            last = os.path.join(self.output_dir, "checkpoints", f"epoch-{self.epoch:03d}.weights.h5")
        raise NonFiniteLossError(
            f"the training loss became {float(loss)} at epoch {self.epoch + 1}, step {batch + 1}; training stopped "
            "and nothing was evaluated or saved as a finished run. "
            + (f"The last good checkpoint is {last}. " if last and os.path.exists(last) else "No epoch finished before. ")
            + "Lower the learning rate (training.learning_rate) or use float32."
        )


class StepCounter(keras.callbacks.Callback):
    """Counts the optimizer steps of each epoch; an epoch of none is an error.
    (`async_safe`: Keras waits for the per-step hooks before `on_epoch_end`.)"""

    async_safe = True

    def __init__(self, describe_data=""):
        super().__init__()
        self.describe_data = describe_data
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.steps == 0:
            raise ValueError(
                f"epoch {epoch + 1} ran no training step: {self.describe_data or 'the data'} gave no full batch "
                "(too few usable image-caption pairs for training.batch_size); lower --batch-size or add data."
            )


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run even though
    the run calls `fit` once per epoch. (`async_safe`, as Keras' own
    progress bar is when none is passed.)"""

    async_safe = True

    def __init__(self, total_epochs):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


class EpochHistory(keras.callbacks.Callback):
    """The logs of every finished epoch, kept across a kill and restart.

    With a `path` (in the run's backup folder, written before `EpochBackup`
    saves the epoch), a resumed run's history covers the epochs done before
    the kill too. Epochs at or after the one a run resumes from are dropped
    when read back (`previous_epochs`).
    """

    def __init__(self, path=None, epochs=()):
        super().__init__()
        self.path = path
        self.epochs = list(epochs)  # [{"epoch": 0, "loss": ..., ...}, ...]

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            try:
                entry[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.epochs = [e for e in self.epochs if e["epoch"] < epoch] + [entry]
        if self.path:
            write_json(self.path, self.epochs)

    @staticmethod
    def previous_epochs(path, resume_epoch):
        """The saved entries of the epochs before `resume_epoch`."""
        if not resume_epoch or not path or not os.path.exists(path):
            return []
        with open(path) as f:
            return [e for e in json.load(f) if e["epoch"] < resume_epoch]

    def columns(self):
        """key -> one value per epoch, None where the key was not logged that
        epoch (an evaluation every N epochs)."""
        keys = dict.fromkeys(k for e in self.epochs for k in e if k != "epoch")
        return {k: [e.get(k) for e in self.epochs] for k in keys}


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback writing per-epoch scalars only.

    With `update_freq="epoch"`, no profiling and no graph, Keras' per-batch
    hooks still build a no-op summary for every log value of every step
    (milliseconds a step on CPU) and, by existing, keep the other per-step
    hooks synchronous; here they are not defined."""

    def __init__(self, log_dir):
        super().__init__(log_dir, write_graph=False, update_freq="epoch", profile_batch=0)

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end


def run_callbacks(output_dir, restore):
    """Resume state, per-epoch weight checkpoints (both from one save per
    epoch) and TensorBoard logs of a run written to `output_dir` (none
    without one)."""
    if not output_dir:
        return []
    checkpoints = os.path.join(output_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5")
    return [
        EpochBackup(backup_dir(output_dir), restore=restore, checkpoint_pattern=checkpoints),
        EpochTensorBoard(os.path.join(output_dir, "logs")),
    ]


def fit_epochs(
    model, epoch_dataset, epochs, output_dir=None, epoch_callbacks=(), callbacks=(), verbose="auto", describe_data=""
):
    """Fits one epoch at a time on `epoch_dataset(epoch)`, from the epoch a
    killed run stopped at (0 for a fresh run).

    Args:
        epoch_callbacks: callbacks that add entries to the epoch logs (the
            evaluation, the bad-record count): run first, so that the
            history, TensorBoard and the resume state see their numbers.
        callbacks: the caller's own callbacks, run after those.

    Returns:
        (history, epochs run now): the whole run's history (the epochs
        before a restart too) as key -> list over epochs (None where a key
        was not logged that epoch), and the number of epochs this call ran.
    """
    start = resumed_epoch(output_dir)
    path = os.path.join(backup_dir(output_dir), HISTORY_FILE) if output_dir else None
    history = EpochHistory(path, EpochHistory.previous_epochs(path, start))
    all_callbacks = (
        [StopOnNonFinite(output_dir), StepCounter(describe_data)]
        + list(epoch_callbacks)
        + [history]
        + run_callbacks(output_dir, restore=start > 0)
        + list(callbacks)
        + [EpochProgbar(epochs)]
    )
    for epoch in range(start, epochs):
        with warnings.catch_warnings():
            # Each epoch's dataset is finite by design (bad records make its
            # length unknown beforehand): its end is the end of the epoch, not
            # the "ran out of data" mistake Keras warns about.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            try:
                model.fit(
                    for_one_epoch(epoch_dataset(epoch)), initial_epoch=epoch, epochs=epoch + 1, verbose=verbose,
                    shuffle=False, callbacks=all_callbacks,
                )
            except Exception as error:
                line = _bad_record_in(error)
                if line is None or isinstance(error, BadRecordError):
                    raise
                raise ValueError(line) from None  # the bad record's own message, one line
    if output_dir:
        shutil.rmtree(backup_dir(output_dir), ignore_errors=True)
    return history.columns(), max(epochs - start, 0)
