"""Agreement across TensorFlow, JAX and PyTorch, each in its own process.

These tests start their own subprocesses for every backend, so they run once
(in the JAX session of the suite) rather than three times. One worker process
per backend does all of that backend's jobs (importing TF/Keras/keras-hub is
most of a worker's time), the three run at the same time so that each can load
the .keras files the two others saved (all six save -> load directions), and a
module-scoped fixture keeps the results for all the tests below.
"""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "cross_backend_worker.py")
BACKENDS = ("tensorflow", "jax", "torch")
# (saver, loader): a .keras file saved under `saver` is loaded under `loader`.
# All six directions: each backend loads the files the two others saved.
SAVE_LOAD_PAIRS = [(saver, loader) for saver in BACKENDS for loader in BACKENDS if loader != saver]
TIMEOUT_S = 900  # all three workers together
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="spawns all three backends itself; runs in the jax session"
)


def _worker_jobs(tmp):
    """backend -> its jobs: save first (others wait for the file), then train, then load."""
    jobs = {b: [f"save={tmp / f'{b}.keras'}", "train"] for b in BACKENDS}
    for saver, loader in SAVE_LOAD_PAIRS:
        jobs[loader].append(f"load={tmp / f'{saver}.keras'}")
    return jobs


@pytest.fixture(scope="module")
def worker_results(tmp_path_factory):
    """{"dir": the workers' folder, "workers": backend -> {"backend", "jobs": {job: result}}
    or {"failed": output tail} if that process failed}."""
    tmp = tmp_path_factory.mktemp("cross_backend")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    procs = {}
    for backend, jobs in _worker_jobs(tmp).items():
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
        log = open(tmp / f"{backend}.log", "w")  # a file, not a pipe: nothing blocks on a full pipe
        procs[backend] = subprocess.Popen(
            [sys.executable, WORKER, str(tmp / f"{backend}.json"), *jobs],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
    deadline = time.monotonic() + TIMEOUT_S
    killed = set()
    try:
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for backend, p in procs.items():  # on timeout or interrupt: stop the workers started here
            if p.poll() is None:
                p.kill()
                p.wait()
                killed.add(backend)
    results = {}
    for backend, proc in procs.items():
        if proc.returncode == 0:
            results[backend] = json.loads((tmp / f"{backend}.json").read_text())
        else:
            tail = (tmp / f"{backend}.log").read_text()[-3000:]
            why = f"killed after {TIMEOUT_S} s" if backend in killed else f"exit status {proc.returncode}"
            results[backend] = {"failed": f"{why}\n{tail}"}
    return {"dir": tmp, "workers": results}


def _job(results, backend, name, model_file=None):
    """The result of job `name` (on `model_file`) in `backend`'s worker; fails the test if
    the worker or the job failed."""
    worker = results["workers"][backend]
    assert "failed" not in worker, f"{backend} worker failed: {worker['failed']}"
    assert worker["backend"] == backend
    job = name if model_file is None else f"{name}={results['dir'] / model_file}"
    assert job in worker["jobs"], f"{backend} worker did not run {job}; it ran {sorted(worker['jobs'])}"
    result = worker["jobs"][job]
    assert "error" not in result, f"{backend} {job} failed:\n{result['error']}"
    return result


def test_same_weights_same_batches_same_loss_after_3_steps(worker_results):
    results = {b: _job(worker_results, b, "train") for b in BACKENDS}
    reference = results["tensorflow"]
    for backend in BACKENDS:
        np.testing.assert_allclose(results[backend]["step_losses"], reference["step_losses"], atol=1e-4)
        np.testing.assert_allclose(results[backend]["loss_after_3_steps"], reference["loss_after_3_steps"], atol=1e-4)
    # The three steps did train: the loss moved.
    assert abs(reference["loss_after_3_steps"] - reference["step_losses"][0]) > 1e-3


@pytest.mark.parametrize("saver, loader", SAVE_LOAD_PAIRS)
def test_keras_file_saved_on_one_backend_loads_on_another(worker_results, saver, loader):
    saved = _job(worker_results, saver, "save", f"{saver}.keras")
    loaded = _job(worker_results, loader, "load", f"{saver}.keras")
    for key in ("image_embeddings", "text_embeddings"):
        np.testing.assert_allclose(loaded[key], saved[key], atol=1e-5)
