"""SavedModel export, checked by a fresh process that imports TensorFlow only.

The model is trained 2 steps on the backend the suite runs under, so running
the suite under tensorflow, jax and torch covers "export a model trained on
each backend". All calls on the export go through one subprocess
(verify_saved_model.py); the Keras references are computed here.
"""

import base64
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_clip.data.image_pipeline import resize_center_crop
from keras_clip.eval import zero_shot_classifier
from keras_clip.export import export_run, export_saved_model

from export_helpers import CAPTIONS, CLASS_NAMES, TEMPLATES

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 16
DIM = 16
SIGNATURES = {
    "encode_image": ({"images": ("float32", [None, SIZE, SIZE, 3])}, {"embeddings": ("float32", [None, DIM])}),
    "encode_image_bytes": ({"image_bytes": ("string", [None])}, {"embeddings": ("float32", [None, DIM])}),
    "encode_text": ({"token_ids": ("int32", [None, 8])}, {"embeddings": ("float32", [None, DIM])}),
    "encode_text_strings": ({"texts": ("string", [None])}, {"embeddings": ("float32", [None, DIM])}),
    "zero_shot": (
        {"image_bytes": ("string", [None])},
        {
            "probabilities": ("float32", [None, len(CLASS_NAMES)]),
            "top_class": ("string", [None]),
            "top_index": ("int32", [None]),
            "top_probability": ("float32", [None]),
        },
    ),
    "class_names": ({}, {"class_names": ("string", [len(CLASS_NAMES)])}),
}
TEXTS = CAPTIONS + ["A Red Square!", "an unseen word", ""]  # 7 captions


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# --------------------------------------------------------------------------- inputs
def encoded_images(seed=0):
    """7 files written by Pillow: PNG / JPEG; RGB, grey, grey+alpha, RGBA, palette; several sizes."""
    rng = np.random.default_rng(seed)

    def encode(h, w, mode, fmt, **options):
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1}[mode]
        pixels = rng.integers(0, 256, (h, w, channels)).astype("uint8")
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode="L" if mode == "P" else mode)
        if mode == "P":
            image = image.convert("RGB").quantize(colors=16)
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    return [
        encode(16, 16, "RGB", "PNG"),
        encode(20, 30, "RGB", "JPEG", quality=90),
        encode(33, 17, "L", "PNG"),
        encode(24, 24, "RGBA", "PNG"),
        encode(9, 40, "P", "PNG"),
        encode(40, 28, "L", "JPEG"),
        encode(21, 19, "LA", "PNG"),
    ]


def reference_pixels(data, size=SIZE):
    """Pillow decodes (as the training pipeline does), the data pipeline's
    evaluation geometry resizes and crops."""
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # (h, w, 3) uint8
    return resize_center_crop(tf.constant(image), (size, size)).numpy()


def b64(items):
    return {"b64": [base64.b64encode(item).decode("ascii") for item in items]}


def run_verifier(directory, calls, arrays, tmp_path):
    calls_path, arrays_path, out_prefix = (str(tmp_path / name) for name in ("calls.json", "arrays.npz", "out"))
    with open(calls_path, "w") as f:
        json.dump({"calls": calls}, f)
    np.savez(arrays_path, **arrays)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "verify_saved_model.py"), directory, calls_path, arrays_path, out_prefix],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out_prefix + ".json") as f:
        report = json.load(f)
    outputs = dict(np.load(out_prefix + ".npz"))
    return report, outputs


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def references(trained_model):
    """Inputs and the Keras model's outputs on them (batch 7; batch 1 is the first row).

    `predict_on_batch` runs both towers in one compiled call (one XLA program
    under JAX instead of op-by-op compilation of every new shape)."""
    model = trained_model
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (7, SIZE, SIZE, 3)).astype("float32")
    token_ids = np.asarray(model.tokenizer(TEXTS), "int32")
    files = encoded_images()
    pixels = np.stack([reference_pixels(f) for f in files]).astype("float32")  # (7, 16, 16, 3)
    on_images = model.predict_on_batch({"images": images, "token_ids": token_ids})
    on_files = model.predict_on_batch({"images": pixels, "token_ids": token_ids})
    return {
        "images": images,
        "token_ids": token_ids,
        "files": files,
        "encode_image": numpy(on_images["image_embeddings"]),
        "encode_text": numpy(on_images["text_embeddings"]),
        "encode_image_bytes": numpy(on_files["image_embeddings"]),
        "encode_text_strings": numpy(on_images["text_embeddings"]),
    }


@pytest.fixture(scope="module")
def served(trained_model, references, tmp_path_factory):
    """Exports the trained model, runs every call in one TF-only subprocess,
    and returns (report, outputs, references)."""
    model = trained_model
    tmp = tmp_path_factory.mktemp("export")
    classes = zero_shot_classifier(model, CLASS_NAMES, TEMPLATES)  # (C, D)
    version_dir = export_saved_model(
        model, str(tmp / "clip"), class_names=CLASS_NAMES, templates=TEMPLATES, class_embeddings=classes
    )
    assert version_dir == str(tmp / "clip" / "1")

    images, token_ids, files = references["images"], references["token_ids"], references["files"]
    logits = float(numpy(model.logit_scale())) * references["encode_image_bytes"] @ classes.T
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    references = dict(references, zero_shot=probabilities / probabilities.sum(1, keepdims=True))

    arrays = {
        "images_1": images[:1],
        "images_7": images,
        "token_ids_1": token_ids[:1],
        "token_ids_7": token_ids,
        "images_0": np.zeros((0, SIZE, SIZE, 3), "float32"),
        "token_ids_0": np.zeros((0, 8), "int32"),
        "images_small": np.zeros((2, 8, 8, 3), "float32"),
        "images_rank3": np.zeros((2, SIZE, SIZE), "float32"),
        "images_uint8": np.zeros((2, SIZE, SIZE, 3), "uint8"),
        "token_ids_float": np.zeros((2, 8), "float32"),
        "token_ids_long": np.full((2, 12), 4, "int32"),
    }
    calls = []
    for n in (1, 7):
        calls += [
            {"id": f"encode_image_{n}", "signature": "encode_image", "inputs": {"images": {"npz": f"images_{n}"}}},
            {"id": f"encode_text_{n}", "signature": "encode_text", "inputs": {"token_ids": {"npz": f"token_ids_{n}"}}},
            {"id": f"encode_image_bytes_{n}", "signature": "encode_image_bytes", "inputs": {"image_bytes": b64(files[:n])}},
            {"id": f"encode_text_strings_{n}", "signature": "encode_text_strings", "inputs": {"texts": {"text": TEXTS[:n]}}},
            {"id": f"zero_shot_{n}", "signature": "zero_shot", "inputs": {"image_bytes": b64(files[:n])}},
        ]
    calls += [
        {"id": "serving_default_7", "signature": "serving_default", "inputs": {"image_bytes": b64(files)}},
        {"id": "class_names", "signature": "class_names", "inputs": {}},
        # Empty batches.
        {"id": "encode_image_0", "signature": "encode_image", "inputs": {"images": {"npz": "images_0"}}},
        {"id": "encode_text_0", "signature": "encode_text", "inputs": {"token_ids": {"npz": "token_ids_0"}}},
        {"id": "encode_image_bytes_0", "signature": "encode_image_bytes", "inputs": {"image_bytes": b64([])}},
        {"id": "encode_text_strings_0", "signature": "encode_text_strings", "inputs": {"texts": {"text": []}}},
        {"id": "zero_shot_0", "signature": "zero_shot", "inputs": {"image_bytes": b64([])}},
        # Errors.
        {"id": "error_image_size", "signature": "encode_image", "inputs": {"images": {"npz": "images_small"}}},
        {"id": "error_image_rank", "signature": "encode_image", "inputs": {"images": {"npz": "images_rank3"}}},
        {"id": "error_image_dtype", "signature": "encode_image", "inputs": {"images": {"npz": "images_uint8"}}},
        {"id": "error_token_dtype", "signature": "encode_text", "inputs": {"token_ids": {"npz": "token_ids_float"}}},
        {"id": "error_token_length", "signature": "encode_text", "inputs": {"token_ids": {"npz": "token_ids_long"}}},
        {"id": "error_not_an_image", "signature": "encode_image_bytes", "inputs": {"image_bytes": {"text": ["not an image"]}}},
        {"id": "error_texts_rank", "signature": "encode_text_strings", "inputs": {"texts": {"text": [["a"], ["b"]]}}},
    ]
    report, outputs = run_verifier(version_dir, calls, arrays, tmp)
    report["version_dir"] = version_dir
    return report, outputs, references


# --------------------------------------------------------------------------- tests
def test_only_tensorflow_serves_the_export(served):
    """The verifier blocks these imports (any attempt fails) and still ran every call."""
    report, _, _ = served
    assert "tensorflow" in report["modules"]
    for package in ("keras", "keras_clip", "keras_hub", "jax", "torch"):
        assert package in report["blocked"] and package not in report["modules"], package


def test_signatures_have_named_inputs_outputs_and_a_dynamic_batch(served):
    report, _, _ = served
    signatures = report["signatures"]
    assert set(signatures) == set(SIGNATURES) | {"serving_default"}
    for name, (inputs, outputs) in SIGNATURES.items():
        got = signatures[name]
        assert {k: (v["dtype"], v["shape"]) for k, v in got["inputs"].items()} == inputs, name
        assert {k: (v["dtype"], v["shape"]) for k, v in got["outputs"].items()} == outputs, name
    # serving_default is encode_image_bytes.
    assert signatures["serving_default"] == signatures["encode_image_bytes"]
    shown = report["saved_model_cli"]
    for name in list(SIGNATURES) + ["serving_default"]:
        assert f"signature_def['{name}']" in shown
    assert "inputs['image_bytes']" in shown and "outputs['top_class']" in shown


def test_export_layout_and_metadata(served, trained_model):
    report, _, _ = served
    version_dir = report["version_dir"]
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.path.isdir(os.path.join(version_dir, "variables"))
    assert not [name for name in os.listdir(os.path.dirname(version_dir)) if name.startswith(".tmp")]
    with open(os.path.join(version_dir, "assets.extra", "keras_clip.json")) as f:
        metadata = json.load(f)
    assert metadata["class_names"] == CLASS_NAMES and metadata["templates"] == TEMPLATES
    assert metadata["serving_default"] == "encode_image_bytes"
    assert metadata["exported_from_backend"] == keras.backend.backend()
    assert metadata["logit_scale"] == pytest.approx(float(numpy(trained_model.logit_scale())), rel=1e-6)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("signature", ["encode_image", "encode_text"])
def test_tensor_signatures_match_keras(served, signature, batch):
    _, outputs, references = served
    got = outputs[f"{signature}_{batch}/embeddings"]
    assert got.shape == (batch, DIM)
    np.testing.assert_allclose(got, references[signature][:batch], rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("signature", ["encode_image_bytes", "encode_text_strings"])
def test_bytes_and_string_signatures_match_keras(served, signature, batch):
    _, outputs, references = served
    got = outputs[f"{signature}_{batch}/embeddings"]
    assert got.shape == (batch, DIM)
    np.testing.assert_allclose(got, references[signature][:batch], rtol=0, atol=1e-4)


def test_serving_default_is_encode_image_bytes(served):
    _, outputs, references = served
    np.testing.assert_allclose(outputs["serving_default_7/embeddings"], references["encode_image_bytes"], atol=1e-4)


@pytest.mark.parametrize("batch", [1, 7])
def test_zero_shot_matches_keras(served, batch):
    _, outputs, references = served
    probabilities = outputs[f"zero_shot_{batch}/probabilities"]
    assert probabilities.shape == (batch, len(CLASS_NAMES))
    np.testing.assert_allclose(probabilities, references["zero_shot"][:batch], rtol=0, atol=1e-4)
    top = probabilities.argmax(1)
    np.testing.assert_array_equal(outputs[f"zero_shot_{batch}/top_index"], top)
    assert list(outputs[f"zero_shot_{batch}/top_class"]) == [CLASS_NAMES[i] for i in top]
    np.testing.assert_allclose(outputs[f"zero_shot_{batch}/top_probability"], probabilities.max(1), atol=1e-7)
    assert list(outputs["class_names/class_names"]) == CLASS_NAMES


@pytest.mark.parametrize(
    "key, shape",
    [
        ("encode_image_0/embeddings", (0, DIM)),
        ("encode_text_0/embeddings", (0, DIM)),
        ("encode_image_bytes_0/embeddings", (0, DIM)),
        ("encode_text_strings_0/embeddings", (0, DIM)),
        ("zero_shot_0/probabilities", (0, len(CLASS_NAMES))),
        ("zero_shot_0/top_class", (0,)),
    ],
)
def test_empty_batch_gives_empty_result(served, key, shape):
    _, outputs, _ = served
    assert outputs[key].shape == shape


@pytest.mark.parametrize(
    "call, expected",
    [
        ("error_image_size", "Shape of tensor images [2,8,8,3] is not compatible with expected shape [?,16,16,3]"),
        ("error_image_rank", "Shape of tensor images [2,16,16] is not compatible with expected shape [?,16,16,3]"),
        ("error_token_length", "Shape of tensor token_ids [2,12] is not compatible with expected shape [?,8]"),
        ("error_texts_rank", "Shape of tensor texts [2,1] is not compatible with expected shape [?]"),
        ("error_image_dtype", "was expected to be a float tensor but is a uint8 tensor"),
        ("error_token_dtype", "was expected to be a int32 tensor but is a float tensor"),
        ("error_not_an_image", "Unknown image file format"),
    ],
)
def test_wrong_inputs_give_clear_errors(served, call, expected):
    report, _, _ = served
    assert call in report["errors"], f"{call} did not raise"
    assert expected in report["errors"][call]


def test_export_refuses_an_existing_version(trained_model, tmp_path):
    base = tmp_path / "clip"
    (base / "3").mkdir(parents=True)
    (base / "3" / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(trained_model, str(base), version=3)


def test_export_run_from_a_run_directory(trained_model, references, tmp_path, capfd):
    """`export_run` loads run_dir/model.keras; on torch it exports through the TF subprocess (and says so)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trained_model.save(str(run_dir / "model.keras"))
    (tmp_path / "out" / "4").mkdir(parents=True)  # versions continue after the largest one
    version_dir = export_run(str(run_dir), str(tmp_path / "out"), serving_default="encode_text_strings")
    assert version_dir == str(tmp_path / "out" / "5")
    message = "re-loading the model under TensorFlow in a subprocess"
    assert (message in capfd.readouterr().err) == (keras.backend.backend() == "torch")
    with open(os.path.join(version_dir, "assets.extra", "keras_clip.json")) as f:
        metadata = json.load(f)
    assert metadata["serving_default"] == "encode_text_strings" and metadata["class_names"] is None
    assert metadata["image_shape"] == [SIZE, SIZE, 3] and metadata["embed_dim"] == DIM
    assert metadata["exported_from_backend"] == keras.backend.backend()
    loaded = tf.saved_model.load(version_dir)
    assert "zero_shot" not in loaded.signatures
    got = loaded.signatures["serving_default"](texts=tf.constant(TEXTS))["embeddings"].numpy()
    np.testing.assert_allclose(got, references["encode_text_strings"], rtol=0, atol=1e-4)


def test_keras_round_trip_is_exact(trained_model, references, tmp_path):
    path = str(tmp_path / "model.keras")
    trained_model.save(path)
    loaded = keras.saving.load_model(path)
    inputs = {"images": references["images"], "token_ids": references["token_ids"]}
    again = loaded.predict_on_batch(inputs)
    before = trained_model.predict_on_batch(inputs)
    for key in ("image_embeddings", "text_embeddings"):
        np.testing.assert_array_equal(numpy(again[key]), numpy(before[key]), err_msg=key)
    np.testing.assert_array_equal(numpy(again["image_embeddings"]), references["encode_image"])
    assert loaded.tokenizer.get_vocabulary() == trained_model.tokenizer.get_vocabulary()
    assert float(numpy(loaded.logit_scale())) == float(numpy(trained_model.logit_scale()))
