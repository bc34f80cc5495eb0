"""Run under one backend by test_cross_backend.py (in a subprocess, KERAS_BACKEND set).

Usage: python cross_backend_worker.py train OUT.json
       python cross_backend_worker.py save MODEL.keras OUT.json
       python cross_backend_worker.py load MODEL.keras OUT.json
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from conftest import tiny_batch, tiny_clip  # noqa: E402


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


def main():
    command = sys.argv[1]
    if command == "train":
        model = deterministic_model()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        losses = []
        for step in range(3):
            logs = model.train_on_batch(tiny_batch(batch=6, seed=step), return_dict=True)
            losses.append(float(logs["loss"]))
        final = model.evaluate(tiny_batch(batch=6, seed=0), batch_size=6, verbose=0, return_dict=True)["loss"]
        result = {"step_losses": losses, "loss_after_3_steps": float(final)}
    elif command == "save":
        model = deterministic_model()
        model.save(sys.argv[2])
        result = embeddings(model)
    elif command == "load":
        model = keras.saving.load_model(sys.argv[2])
        result = embeddings(model)
    result["backend"] = keras.backend.backend()
    with open(sys.argv[-1], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
