"""Rematerialised transformer blocks (`training.remat`) give the plain step's
loss and updated weights; `set_remat` turns it on and off with clear errors."""

import keras
import numpy as np
import pytest

from keras_clip.models.remat import set_remat, transformer_blocks
from tests.models.conftest import tiny_batch, tiny_clip


def _step(weights, remat):
    model = tiny_clip()
    model.set_weights(weights)
    assert set_remat(model, remat) == 2  # one image block, one text block
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.5),
        jit_compile=False,  # eager: no compile time in the fast suite (benchmarks run it jitted)
    )
    logs = model.train_on_batch(tiny_batch(batch=8, seed=1), return_dict=True)
    return logs, model


# Eager steps: ~10 s on PyTorch; 1-3 min on TensorFlow / JAX on a loaded CPU (slow stage).
@(pytest.mark.slow if keras.backend.backend() != "torch" else (lambda f: f))
def test_remat_step_equals_the_plain_step():
    keras.utils.set_random_seed(0)
    start = tiny_clip().get_weights()
    plain_logs, plain = _step(start, False)
    remat_logs, remat = _step(start, True)
    assert all(block.remat and 'call' in vars(block) for block in transformer_blocks(remat))
    np.testing.assert_allclose(remat_logs["loss"], plain_logs["loss"], rtol=1e-5)
    moved = False
    for before, a, b in zip(start, plain.weights, remat.weights):
        path = b.path
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=path)
        moved = moved or not np.allclose(before, a)
    assert moved, "the step changed no weight"


def test_set_remat_off_and_errors():
    model = tiny_clip()
    set_remat(model, True)
    set_remat(model, False)
    # Off: each block runs its own call again (on PyTorch the fused one, models/fused_block.py).
    fused = keras.backend.backend() == "torch"
    assert all(not block.remat and getattr(vars(block).get("call"), "fused", False) == fused
               for block in transformer_blocks(model))
    with pytest.raises(ValueError, match="remat must be true or false; received remat='yes'"):
        set_remat(model, "yes")
    with pytest.raises(ValueError, match="found no transformer blocks"):
        set_remat(keras.Sequential([keras.layers.Dense(2)]), True)


JAX_CPU_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import jax, keras, numpy as np
from keras_clip.losses import infonce
from keras_clip.models.builder import build_clip
from keras_clip.models.remat import JAX_CPU_MEMORY_SCHEDULE_FLAG

config = {
    "embed_dim": 64,
    "image_encoder": {"image_size": 32, "patch_size": 4, "width": 64, "layers": 3, "heads": 2, "mlp_dim": 256},
    "text_encoder": {"vocabulary_size": 50, "context_length": 16, "width": 64, "layers": 3, "heads": 2, "mlp_dim": 256},
    "end_token_id": 3, "start_token_id": 2,
}
remat_model = build_clip(config, remat=True)  # first: it must set the flag before JAX starts
flag_set = JAX_CPU_MEMORY_SCHEDULE_FLAG in os.environ.get("XLA_FLAGS", "")
rng = np.random.default_rng(0)
tokens = rng.integers(4, 50, (64, 16)).astype("int32")
tokens[:, 0], tokens[:, -1] = 2, 3
batch = {"images": rng.integers(0, 256, (64, 32, 32, 3)).astype("uint8"), "token_ids": tokens}
temp = {}
for name, model in (("remat", remat_model), ("plain", build_clip(config))):
    def loss(trainable, non_trainable):
        out, _ = model.stateless_call(trainable, non_trainable, batch, training=True)
        return infonce(out["image_embeddings"], out["text_embeddings"], out["logit_scale"])
    args = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    compiled = jax.jit(jax.grad(loss)).lower(*args).compile()
    temp[name] = compiled.memory_analysis().temp_size_in_bytes
print(json.dumps({"flag_set": flag_set, "temp": temp, "platform": jax.default_backend()}))
"""


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX subprocess; runs in the jax session")
def test_jax_cpu_remat_lowers_the_compiled_steps_temporary_memory(tmp_path):
    """`build_clip(remat=True)` asks XLA's CPU compiler for its memory-ordered
    schedule before JAX starts; with it, the compiled gradient's temporary
    buffers (XLA's own figure, not a timing) drop with remat. Under XLA's
    default CPU scheduler they were equal to the byte."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", JAX_CPU_SCRIPT], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["flag_set"] and result["platform"] == "cpu"
    # measured: 66.5 MB against 98.7 MB; 145.2 MB both under the default scheduler
    assert result["temp"]["remat"] < 0.8 * result["temp"]["plain"], result


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU backend only")
def test_jax_remat_after_jax_started_warns_with_the_fix():
    import jax
    import os

    jax.numpy.zeros(1).block_until_ready()  # JAX's backend has started
    model = tiny_clip()
    if "xla_cpu_enable_concurrency_optimized_scheduler" in os.environ.get("XLA_FLAGS", ""):
        pytest.skip("XLA_FLAGS already chooses the CPU scheduler")
    with pytest.warns(UserWarning, match="XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false"):
        set_remat(model, True)
