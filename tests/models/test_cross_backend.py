"""Agreement across TensorFlow, JAX and PyTorch, each in its own process.

These tests start their own subprocesses for every backend, so they run once
(in the JAX session of the suite) rather than three times.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "cross_backend_worker.py")
BACKENDS = ("tensorflow", "jax", "torch")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="spawns all three backends itself; runs in the jax session"
)


def _run(backend, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, WORKER, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{backend} worker failed:\n{proc.stderr[-3000:]}"
    with open(args[-1]) as f:
        return json.load(f)


def test_same_weights_same_batches_same_loss_after_3_steps(tmp_path):
    results = {b: _run(b, "train", str(tmp_path / f"{b}.json")) for b in BACKENDS}
    reference = results["tensorflow"]
    for backend in BACKENDS:
        assert results[backend]["backend"] == backend
        np.testing.assert_allclose(results[backend]["step_losses"], reference["step_losses"], atol=1e-4)
        np.testing.assert_allclose(results[backend]["loss_after_3_steps"], reference["loss_after_3_steps"], atol=1e-4)
    # The three steps did train: the loss moved.
    assert abs(reference["loss_after_3_steps"] - reference["step_losses"][0]) > 1e-3


@pytest.mark.parametrize("saver, loader", [("torch", "jax"), ("tensorflow", "torch"), ("jax", "tensorflow")])
def test_keras_file_saved_on_one_backend_loads_on_another(tmp_path, saver, loader):
    path = str(tmp_path / "model.keras")
    saved = _run(saver, "save", path, str(tmp_path / "saved.json"))
    loaded = _run(loader, "load", path, str(tmp_path / "loaded.json"))
    for key in ("image_embeddings", "text_embeddings"):
        np.testing.assert_allclose(loaded[key], saved[key], atol=1e-5)
