"""Subprocess worker of tests/train/test_distribution.py (device counts and
jax.distributed are fixed when the backend starts, so each layout runs in a
fresh process). Usage:

    python -m tests.train._distribution_worker MODE OUT.npz [PROCESS_ID PORT]

MODE: tf_mirrored (4 logical CPUs, layouts full and local), jax_devices
(XLA_FLAGS gives 4 host devices), jax_process (2 processes, one device each).
Writes the single-device reference and the distributed results: the loss of
one SGD step on a batch of 8 and every weight after it.
"""

import os
import sys

import numpy as np

MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "tf_mirrored":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)
if MODE == "jax_process":
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{sys.argv[4]}", num_processes=2, process_id=int(sys.argv[3]))

import keras  # noqa: E402

from keras_clip.train.distribution import data_parallel  # noqa: E402
from tests.models.conftest import tiny_batch, tiny_clip  # noqa: E402

B = 8
JIT = MODE != "tf_mirrored"  # XLA on JAX (eager JAX is slow); TF traces faster without it
BATCH = tiny_batch(batch=B, seed=3)


def step(batch, layout="full", fit=False):
    """Builds the tiny CLIP from seed 0, one SGD step; (loss, weights)."""
    keras.utils.set_random_seed(0)
    model = tiny_clip()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss_layout=layout, jit_compile=JIT)
    if fit:  # tf.distribute splits a tf.data batch over the replicas
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices(batch).batch(B)
        loss = model.fit(data, epochs=1, verbose=0).history["loss"][-1]
    else:
        loss = model.train_on_batch(batch, return_dict=True)["loss"]
    return float(loss), [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]


results = {}
ref_loss, ref_weights = step(BATCH, fit=MODE == "tf_mirrored")
results["ref_loss"] = ref_loss
if MODE == "tf_mirrored":
    for layout in ("full", "local"):
        with data_parallel(layout, batch_size=B) as layout:
            loss, weights = step(BATCH, layout, fit=True)
        results[f"{layout}_loss"] = loss
        results[f"{layout}_weight_diff"] = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, ref_weights))
    results["replicas"] = len(tf.config.list_logical_devices("CPU"))
else:
    import jax

    if MODE == "jax_process":  # each process feeds its half of the global batch
        half = B // 2
        pid = int(sys.argv[3])
        local = {k: v[pid * half : (pid + 1) * half] for k, v in BATCH.items()}
    else:
        local = BATCH
    with data_parallel("full", batch_size=B):
        loss, weights = step(local)
    results["full_loss"] = loss
    results["full_weight_diff"] = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, ref_weights))
    results["replicas"] = jax.device_count()
np.savez(OUT, **results)
print({k: float(v) for k, v in results.items()})
