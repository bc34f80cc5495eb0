"""Loads a SavedModel with TensorFlow alone and runs the calls listed in a JSON file.

Run in a fresh subprocess by test_saved_model.py, so that nothing but
TensorFlow (no keras, no keras_clip) serves the export:

    python verify_saved_model.py SAVED_MODEL_DIR CALLS.json ARRAYS.npz OUT_PREFIX

CALLS.json: {"calls": [{"id", "signature", "inputs": {name: value}}]} where a
value is {"npz": key} (an array in ARRAYS.npz), {"b64": [base64 strings]} or
{"text": [str]}. Each call's outputs go to OUT_PREFIX.npz as "<id>/<output>";
OUT_PREFIX.json holds the signatures (names, dtypes, shapes), the error of
each call that raised, the `saved_model_cli show --all` text and the
top-level packages imported (keras, keras_hub, keras_clip, tf_keras, jax and
torch are blocked: importing them fails).

A model whose tokenizer is OpenAI's BPE (`CLIPTokenizer`) tokenises with two
TF Text ops (`RegexSplitWithOffsets`, `NormalizeUTF8`). `import tensorflow_text`
would import Keras, so their kernels are registered with `tf.load_op_library`
from TF Text's installed op libraries, as a serving process would.
"""

import base64
import contextlib
import glob
import importlib.util
import io
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Serving must not need the training stack: make these imports fail. (A plain
# `import tensorflow` would import keras for `tf.keras`; it copes without.)
BLOCKED = ("keras", "keras_hub", "keras_clip", "tf_keras", "jax", "torch")
for _name in BLOCKED:
    sys.modules[_name] = None

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _value(spec, arrays):
    if "npz" in spec:
        return tf.constant(arrays[spec["npz"]])
    if "b64" in spec:
        return tf.constant([base64.b64decode(s) for s in spec["b64"]], dtype=tf.string)
    return tf.constant(spec["text"], dtype=tf.string)


def register_tf_text_ops():
    """Loads TF Text's op libraries (not its Python package); their names, or [] without TF Text."""
    spec = importlib.util.find_spec("tensorflow_text")  # finds, does not import
    if spec is None or spec.origin is None:
        return []
    libraries = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "python", "ops", "_*.so")))
    for library in libraries:
        tf.load_op_library(library)
    return [os.path.basename(library) for library in libraries]


def _spec(tensor_spec):
    return {"dtype": tensor_spec.dtype.name, "shape": tensor_spec.shape.as_list()}


def _saved_model_cli(directory):
    try:
        from tensorflow.python.tools import saved_model_cli

        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            saved_model_cli._show_all(directory)
        return text.getvalue()
    except (ImportError, AttributeError):
        cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
        return subprocess.run([cli, "show", "--dir", directory, "--all"], capture_output=True, text=True).stdout


def main():
    directory, calls_path, arrays_path, out_prefix = sys.argv[1:5]
    with open(calls_path) as f:
        calls = json.load(f)["calls"]
    arrays = np.load(arrays_path)
    tf_text_libraries = register_tf_text_ops()
    loaded = tf.saved_model.load(directory)

    signatures = {}
    for name, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        signatures[name] = {
            "inputs": {key: _spec(spec) for key, spec in kwargs.items()},
            "outputs": {key: _spec(spec) for key, spec in fn.structured_outputs.items()},
        }

    outputs, errors = {}, {}
    for call in calls:
        inputs = {name: _value(spec, arrays) for name, spec in call["inputs"].items()}
        try:
            result = loaded.signatures[call["signature"]](**inputs)
        except Exception as error:  # noqa: BLE001 - the message is what the test checks
            errors[call["id"]] = f"{type(error).__name__}: {error}"
            continue
        for key, value in result.items():
            value = value.numpy()
            if value.dtype == object:
                value = np.array([v.decode("utf-8") for v in value.reshape(-1)], dtype=str).reshape(value.shape)
            outputs[f"{call['id']}/{key}"] = value

    np.savez(out_prefix + ".npz", **outputs)
    report = {
        "signatures": signatures,
        "errors": errors,
        "saved_model_cli": _saved_model_cli(directory),
        "blocked": list(BLOCKED),
        "tf_text_op_libraries": tf_text_libraries,
        "modules": sorted({m.split(".")[0] for m, module in sys.modules.items() if module is not None}),
    }
    with open(out_prefix + ".json", "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
