"""What a run may do to its output directory.

- A finished run (`model.keras` and `metrics.json` present, no resume state)
  is never overwritten. `train` refuses, naming the run and the ways out: a
  new output directory, `overwrite=True` (`--overwrite`: removes the old
  run's files, checkpoints included, then starts), or more epochs than the
  finished run had, which continues it from its last checkpoint.
- A killed run (resume state in `backup/`) resumes only with the settings it
  started with: any difference in a key that changes the result is an error
  listing each key with its old and new value.
- One run at a time: `RunLock` holds `R/.lock` (pid, host, start time); a
  second run into the same directory refuses, and a lock left by a dead
  process is taken over with a notice.
"""

import datetime
import json
import os
import shutil
import socket

import yaml

from keras_clip.train.run_dir import BACKUP_DIR, CONFIG_FILE, METRICS_FILE, MODEL_FILE, backup_dir, write_json

LOCK_FILE = ".lock"
# What a run writes; `--overwrite` removes exactly these.
RUN_FILES = (MODEL_FILE, METRICS_FILE, CONFIG_FILE, "tokenizer", "checkpoints", "logs", BACKUP_DIR, "report")
# Config keys that do not change the trained weights (evaluation only).
RESULT_NEUTRAL = ("eval", "data.eval", "data.classes", "data.templates", "data.max_eval_examples", "data.strict")


class RunDirectoryError(ValueError):
    """The output directory holds something this run must not touch."""


def is_finished(output_dir):
    return (
        os.path.isfile(os.path.join(output_dir, MODEL_FILE))
        and os.path.isfile(os.path.join(output_dir, METRICS_FILE))
        and not os.path.isdir(backup_dir(output_dir))
    )


def _flatten(config, prefix=""):
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "loss" and prefix != "loss.":
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def changed_keys(old, new, ignore=RESULT_NEUTRAL):
    """[(dotted key, old value, new value)] for every key whose value differs,
    keys under `ignore` excepted."""
    a, b = _flatten(old), _flatten(new)
    keep = lambda k: not any(k == i or k.startswith(i + ".") for i in ignore)  # noqa: E731
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if keep(k) and a.get(k) != b.get(k)]


def read_run_config(output_dir):
    path = os.path.join(output_dir, CONFIG_FILE)
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as error:
        raise RunDirectoryError(
            f"Cannot read {path!r} ({error}); the run directory is damaged. Start over with --overwrite "
            "or pick another --output-dir."
        ) from None


def _describe(changes):
    return "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes)


def prepare(output_dir, config, overwrite=False, print_fn=print):
    """Checks `output_dir` against `config` before any work; returns what
    the run will do: "fresh", "resume" (a killed run) or "continue" (a
    finished run given more epochs)."""
    if not output_dir or not os.path.exists(output_dir):
        return "fresh"
    if not os.path.isdir(output_dir):
        raise RunDirectoryError(f"--output-dir {output_dir!r} is a file; pass a directory.")
    if overwrite:
        removed = [name for name in RUN_FILES if os.path.exists(os.path.join(output_dir, name))]
        for name in removed:
            path = os.path.join(output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        if removed:
            print_fn(f"--overwrite: removed the earlier run's {', '.join(removed)} from {output_dir}.")
        return "fresh"
    has_config = os.path.isfile(os.path.join(output_dir, CONFIG_FILE))
    if is_finished(output_dir):
        return _continue_finished(output_dir, config, print_fn)
    if os.path.isdir(backup_dir(output_dir)) and has_config:
        changes = changed_keys(read_run_config(output_dir), config)
        if changes:
            raise RunDirectoryError(
                f"{output_dir!r} holds a killed run started with other settings ({_describe(changes)}); "
                "resuming would mix them. Rerun with the run's own settings, or start over with --overwrite, "
                "or pick another --output-dir."
            )
        return "resume"
    return "fresh"


def _continue_finished(output_dir, config, print_fn):
    old = read_run_config(output_dir)
    old_epochs, new_epochs = int(old["training"]["epochs"]), int(config["training"]["epochs"])
    ways_out = (
        "pick a new --output-dir, pass --overwrite to delete it and train again, or pass --epochs N with N > "
        f"{old_epochs} to continue it"
    )
    if new_epochs <= old_epochs:
        raise RunDirectoryError(f"{output_dir!r} holds a finished run ({old_epochs} epochs); it is never overwritten: {ways_out}.")
    changes = changed_keys(old, config, ignore=RESULT_NEUTRAL + ("training.epochs",))
    if changes:
        raise RunDirectoryError(
            f"{output_dir!r} holds a finished run with other settings ({_describe(changes)}); continuing it "
            f"would mix them: {ways_out} with the run's own settings."
        )
    checkpoint = os.path.join(output_dir, "checkpoints", f"epoch-{old_epochs:03d}.weights.h5")
    if not os.path.isfile(checkpoint):
        raise RunDirectoryError(
            f"Cannot continue {output_dir!r}: its last checkpoint {checkpoint!r} is missing; {ways_out.split(', or')[0]}."
        )
    with open(os.path.join(output_dir, METRICS_FILE)) as f:
        history = json.load(f).get("history", {})
    epochs = [{"epoch": e, **{k: v[e] for k, v in history.items() if e < len(v) and v[e] is not None}} for e in range(old_epochs)]
    backup = backup_dir(output_dir)
    os.makedirs(backup, exist_ok=True)
    shutil.copyfile(checkpoint, os.path.join(backup, "latest.weights.h5"))
    write_json(os.path.join(backup, "history.json"), epochs)
    write_json(os.path.join(backup, "state.json"), {"next_epoch": old_epochs})
    print_fn(
        f"Continuing the finished run in {output_dir} from epoch {old_epochs} to {new_epochs} (weights and "
        f"optimizer state of its last checkpoint; the learning-rate schedule now spans {new_epochs} epochs)."
    )
    return "continue"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`with RunLock(output_dir):` one training run per directory at a time."""

    def __init__(self, output_dir, print_fn=print):
        self.path = os.path.join(output_dir, LOCK_FILE) if output_dir else None
        self.print_fn = print_fn

    def _write(self):
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now().isoformat(timespec="seconds")}, f)

    def __enter__(self):
        if not self.path:
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            self._write()
            return self
        except FileExistsError:
            pass
        try:
            with open(self.path) as f:
                holder = json.load(f)
        except (OSError, ValueError):
            holder = {}
        same_host = holder.get("host") == socket.gethostname()
        if holder and (not same_host or _alive(int(holder.get("pid", -1)))):
            raise RunDirectoryError(
                f"{os.path.dirname(self.path)!r} is in use by another training run (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}); wait for it to end or pick another "
                "--output-dir. If that run is gone, delete " + repr(self.path) + "."
            )
        self.print_fn(
            f"Taking over the lock {self.path!r} left by a run that is no longer running "
            f"(pid {holder.get('pid', '?')}, started {holder.get('started', '?')})."
        )
        os.remove(self.path)
        self._write()
        return self

    def __exit__(self, *exc):
        if self.path and os.path.exists(self.path):
            os.remove(self.path)
        return False
