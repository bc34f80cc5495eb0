"""Run under one backend by test_cross_backend.py (in a subprocess, KERAS_BACKEND set).

Usage: python cross_backend_worker.py OUT.json JOB [JOB ...]

Each JOB is one of
    train            3 Adam steps on the deterministic tiny model; step losses + final loss
    save=MODEL.keras save the deterministic tiny model; its embeddings of a fixed batch
    load=MODEL.keras load a .keras file (saved by another backend's worker); its embeddings

All jobs run in this one process (importing TF/Keras/keras-hub costs ~20 s on a small
machine), in order, and OUT.json gets {"backend": ..., "jobs": {JOB: result}}. A job
that raises records {"error": traceback} and the others still run. `save` writes the
file under a temporary name and renames it, so a concurrent `load` never reads half a
file; `load` waits for the file (or for the `.failed` marker a failed save leaves), so
the three workers can run at the same time and load each other's files.
"""

import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from conftest import tiny_batch, tiny_clip  # noqa: E402

LOAD_WAIT_S = 480  # how long `load` waits for another worker's `save`


def deterministic_model():
    """The tiny model with weights drawn from NumPy (the same on every backend)."""
    model = tiny_clip()
    rng = np.random.default_rng(1234)
    for w in model.weights:
        if "position_ids" in w.path or "log_scale" in w.path:
            continue
        shape = tuple(w.shape)
        w.assign((rng.standard_normal(shape) * 0.05).astype("float32"))
    return model


def embeddings(model):
    out = model(tiny_batch(batch=3, seed=9))
    return {k: keras.ops.convert_to_numpy(out[k]).tolist() for k in ("image_embeddings", "text_embeddings")}


def train():
    model = deterministic_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    losses = []
    for step in range(3):
        logs = model.train_on_batch(tiny_batch(batch=6, seed=step), return_dict=True)
        losses.append(float(logs["loss"]))
    final = model.evaluate(tiny_batch(batch=6, seed=0), batch_size=6, verbose=0, return_dict=True)["loss"]
    return {"step_losses": losses, "loss_after_3_steps": float(final)}


def save(path):
    try:
        model = deterministic_model()
        partial = os.path.join(os.path.dirname(path), f".partial-{os.getpid()}.keras")
        model.save(partial)
        os.replace(partial, path)  # atomic: a waiting `load` sees all of the file or none
        return embeddings(model)
    except BaseException:
        with open(path + ".failed", "w") as f:
            f.write(traceback.format_exc())
        raise


def load(path):
    deadline = time.monotonic() + LOAD_WAIT_S
    while not os.path.exists(path):
        if os.path.exists(path + ".failed"):
            raise RuntimeError(f"the worker that saves {path} failed:\n" + open(path + ".failed").read())
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {LOAD_WAIT_S} s")
        time.sleep(0.2)
    model = keras.saving.load_model(path)
    return embeddings(model)


def run_job(job):
    name, _, path = job.partition("=")
    if name == "train" and not path:
        return train()
    if name in ("save", "load") and path:
        return {"save": save, "load": load}[name](path)
    raise ValueError(f"unknown job {job!r}; expected 'train', 'save=PATH' or 'load=PATH'")


def main():
    out_path, jobs = sys.argv[1], sys.argv[2:]
    results = {}
    for job in jobs:
        try:
            results[job] = run_job(job)
        except Exception:
            results[job] = {"error": traceback.format_exc()}
    with open(out_path, "w") as f:
        json.dump({"backend": keras.backend.backend(), "jobs": results}, f)


if __name__ == "__main__":
    main()
