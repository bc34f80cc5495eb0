"""Data parallel with global negatives (`training.distribution`).

- The local-loss blocks of every replica sum to the full loss (pure
  functions, every backend).
- JAX, 4 host devices (`XLA_FLAGS`, fixed when JAX starts: a subprocess):
  `keras.distribution.DataParallel` gives the single-device loss and weights
  after one SGD step on the same global batch.
- JAX, 2 processes on localhost (`jax.distributed`, gloo CPU collectives),
  each feeding its half of the batch: the same.
- TensorFlow, `MirroredStrategy` over 4 logical CPUs, full and local
  layouts: the same.
The three subprocess tests are marked slow (each compiles two steps).
- Settings that cannot run are refused with the reason.
"""

import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_clip.losses import infonce, siglip
from keras_clip.losses.local_block import infonce_local_block, siglip_local_block
from keras_clip.train import distribution

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKEND = keras.backend.backend()
TOL = 1e-5


def _normalized(rng, shape):
    x = rng.normal(size=shape).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("objective", ["infonce", "dcl", "siglip"])
def test_local_blocks_sum_to_the_full_loss(objective, rng):
    x, y = _normalized(rng, (12, 5)), _normalized(rng, (12, 5))
    shards = [(0, 3), (3, 7), (7, 12)]  # uneven shards, as tf.distribute may give
    if objective == "siglip":
        full = siglip(x, y, 10.0, -10.0)
        parts = [siglip_local_block(x[a:b], y, 10.0, -10.0, a) for a, b in shards]
    else:
        decoupled = objective == "dcl"
        full = infonce(x, y, 10.0, decoupled=decoupled)
        parts = [infonce_local_block(x[a:b], y[a:b], x, y, 10.0, a, decoupled=decoupled) for a, b in shards]
    total = sum(float(keras.ops.convert_to_numpy(p)) for p in parts)
    assert abs(total - float(keras.ops.convert_to_numpy(full))) < TOL


def test_settings_are_checked():
    assert distribution.parse(None) is None
    assert distribution.parse("data_parallel") == {"name": "data_parallel", "layout": "full"}
    assert distribution.loss_layout({"name": "data_parallel", "layout": "local"}) == "local"
    with pytest.raises(ValueError, match="received 'model_parallel'"):
        distribution.parse("model_parallel")
    with pytest.raises(ValueError, match="layout must be one of"):
        distribution.parse({"name": "data_parallel", "layout": "rows"})
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="no distribution for it.*KERAS_BACKEND=jax"):
            distribution.check_settings({"distribution": "data_parallel"})
    else:
        with pytest.raises(ValueError, match="micro_batches=4 does not compose"):
            distribution.check_settings({"distribution": "data_parallel", "micro_batches": 4})


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(mode, out, backend, extra_env=None, args=()):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.update(extra_env or {})
    command = [sys.executable, "-m", "tests.train._distribution_worker", mode, str(out), *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(processes, timeout=420):
    """Waits for every worker; kills all of them if one fails or time runs out."""
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    except subprocess.TimeoutExpired:
        outputs = ["timed out"] * len(processes)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]


def _check(results, layouts=("full",)):
    for layout in layouts:
        loss_diff = abs(float(results[f"{layout}_loss"]) - float(results["ref_loss"]))
        weight_diff = float(results[f"{layout}_weight_diff"])
        print(f"{layout}: loss diff {loss_diff:.2e}, max weight diff {weight_diff:.2e}")
        assert loss_diff < TOL and weight_diff < TOL, (layout, loss_diff, weight_diff)


# The workers set their own KERAS_BACKEND, so these run once, in the slow
# stage (whatever the parent's backend): each compiles two training steps.


@pytest.mark.slow
def test_jax_data_parallel_over_4_devices_equals_one_device(tmp_path):
    out = tmp_path / "jax.npz"
    _finish([_start("jax_devices", out, "jax", {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})])
    results = np.load(out)
    assert int(results["replicas"]) == 4
    _check(results)


@pytest.mark.slow
def test_jax_two_processes_each_feeding_half_equal_one_process(tmp_path):
    port = _free_port()
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    _finish([_start("jax_process", outs[i], "jax", env, args=(i, port)) for i in range(2)])
    for out in outs:
        results = np.load(out)
        assert int(results["replicas"]) == 2
        _check(results)


@pytest.mark.slow
def test_tensorflow_mirrored_full_and_local_layouts_equal_one_device(tmp_path):
    out = tmp_path / "tf.npz"
    _finish([_start("tf_mirrored", out, "tensorflow")])
    results = np.load(out)
    assert int(results["replicas"]) == 4
    _check(results, layouts=("full", "local"))
