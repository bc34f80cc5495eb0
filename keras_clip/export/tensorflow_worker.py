"""Export from the PyTorch backend: Keras 3.15 cannot write a SavedModel
there, but a `.keras` file is backend independent, so it is re-loaded under
TensorFlow in a subprocess (`python -m keras_clip.export --spec ...`)."""

import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

SOURCE_BACKEND_ENV = "KERAS_CLIP_EXPORT_SOURCE_BACKEND"  # set for the TensorFlow worker


def export_in_tensorflow_subprocess(model, target, options):
    with tempfile.TemporaryDirectory(prefix="keras_clip_export_") as tmp:
        model_path = os.path.join(tmp, "model.keras")
        model.save(model_path)
        spec = dict(options, version=int(os.path.basename(target)))
        run_tensorflow_worker(model_path, os.path.dirname(target), spec)


def run_tensorflow_worker(model_path, output, spec):
    """Runs `python -m keras_clip.export MODEL --output OUTPUT --spec SPEC.json`
    with KERAS_BACKEND=tensorflow; `spec` holds export_saved_model's arguments."""
    print(
        "keras_clip.export: Keras cannot write a SavedModel from the PyTorch backend; "
        "re-loading the model under TensorFlow in a subprocess to export it.",
        file=sys.stderr,
        flush=True,
    )
    spec = dict(spec)
    with tempfile.TemporaryDirectory(prefix="keras_clip_export_") as tmp:
        if spec.get("class_embeddings") is not None:
            embeddings_path = os.path.join(tmp, "class_embeddings.npy")
            np.save(embeddings_path, np.asarray(spec["class_embeddings"], "float32"))
            spec["class_embeddings"] = embeddings_path
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, KERAS_BACKEND="tensorflow", **{SOURCE_BACKEND_ENV: keras.backend.backend()})
        env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        command = [sys.executable, "-m", "keras_clip.export", model_path, "--output", os.fspath(output), "--spec", spec_path]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if spec.get("verbose") and result.stdout:
        print(result.stdout, end="")
    if result.returncode != 0:
        raise RuntimeError(
            f"Exporting under TensorFlow (subprocess `{' '.join(command)}`) failed with exit code "
            f"{result.returncode}:\n{result.stderr[-4000:]}"
        )
