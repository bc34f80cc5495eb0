"""After `keras-clip convert` and `keras-clip export`, a TensorFlow-only process
serves an imported ViT-B/32 (OpenAI layout, random weights) within 1e-4 of
open_clip: raw strings through the SavedModel's own tokenizer, PNG bytes
through its own decoder.

The SavedModel is served by `tests/export/verify_saved_model.py` in a fresh
subprocess that blocks keras, keras_hub, keras_clip, jax and torch. The PNGs
are 224 x 224 (the model's size), so the served resize is the identity and
both sides see the same pixels; the served embeddings are L2-normalised and
are compared with open_clip's, normalised.
"""

import base64
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_clip.cli import main as keras_clip_cli
from pretrained_helpers import RESULTS, reference_pixels

VERIFY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "export", "verify_saved_model.py")
N = 8  # images and captions (ViT-B/32 on 2 CPU cores; the in-process tests check 32 x 32)
TEXTS = [
    "a photo of a cat",
    "Crème brûlée à la carte, naïve café",
    "東京タワーの夜景 and 北京",
    "🐶🐱 dogs &amp; cats!!! ...??",
    "",
    "   Multiple   spaces\tand\nnew lines  ",
    "3.14159 is pi; 1,000,000 > 999 (#42)",
    " ".join(f"word{i}" for i in range(120)),  # longer than the context: truncated
]
CLASSES = ["cat", "dog", "aeroplane"]
TEMPLATES = ["a photo of a {}.", "a blurry photo of the {}."]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _png(pixels):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _serve(saved_model, calls, arrays, tmp_path):
    """Runs `calls` on the SavedModel in a TensorFlow-only subprocess."""
    calls_path, arrays_path = os.path.join(tmp_path, "calls.json"), os.path.join(tmp_path, "arrays.npz")
    with open(calls_path, "w") as f:
        json.dump({"calls": calls}, f)
    np.savez(arrays_path, **arrays)
    out = os.path.join(tmp_path, "served")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, VERIFY, saved_model, calls_path, arrays_path, out],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out + ".json") as f:
        report = json.load(f)
    assert not report["errors"], report["errors"]
    assert not set(report["modules"]) & {"keras", "keras_clip", "keras_hub", "jax", "torch"}
    return dict(np.load(out + ".npz"))


@pytest.mark.slow  # ViT-B/32: convert, export and serve (~2-4 min on 2 CPU cores)
def test_exported_vit_b32_serves_open_clip_embeddings(open_clip, torch, tmp_path):
    import keras

    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    checkpoint = os.path.join(tmp_path, "vit_b32.pt")
    torch.save(reference.state_dict(), checkpoint)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, 224, 224, 3), dtype=np.uint8)
    token_ids = open_clip.tokenize(TEXTS).numpy()  # OpenAI's BPE ids, context 77
    assert token_ids.shape == (N, 77)
    ref_image = _unit(reference.encode_image(torch.from_numpy(reference_pixels(images.astype("float32")))).numpy())
    ref_text = _unit(reference.encode_text(torch.from_numpy(token_ids)).numpy())
    prompts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    per_prompt = _unit(reference.encode_text(open_clip.tokenize(prompts)).numpy()).reshape(len(CLASSES), len(TEMPLATES), -1)
    ref_classes = _unit(per_prompt.mean(1))
    logits = ref_image @ ref_classes.T
    scale = float(reference.logit_scale.exp())
    del reference

    run_dir, export_dir = os.path.join(tmp_path, "run"), os.path.join(tmp_path, "export")
    assert keras_clip_cli(["convert", checkpoint, "--output", run_dir]) == 0
    classes_file, templates_file = os.path.join(tmp_path, "classes.txt"), os.path.join(tmp_path, "templates.txt")
    with open(classes_file, "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    with open(templates_file, "w") as f:
        f.write("\n".join(TEMPLATES) + "\n")
    args = ["export", run_dir, "--output", export_dir, "--classes", classes_file, "--templates", templates_file]
    assert keras_clip_cli(args) == 0
    saved_model = os.path.join(export_dir, "1")

    pngs = [_png(image) for image in images]
    calls = [
        {"id": "bytes", "signature": "encode_image_bytes", "inputs": {"image_bytes": {"b64": pngs}}},
        {"id": "pixels", "signature": "encode_image", "inputs": {"images": {"npz": "images"}}},
        {"id": "strings", "signature": "encode_text_strings", "inputs": {"texts": {"text": TEXTS}}},
        {"id": "ids", "signature": "encode_text", "inputs": {"token_ids": {"npz": "token_ids"}}},
        {"id": "zero_shot", "signature": "zero_shot", "inputs": {"image_bytes": {"b64": pngs}}},
    ]
    arrays = {"images": images.astype("float32"), "token_ids": token_ids.astype("int32")}
    served = _serve(saved_model, calls, arrays, tmp_path)

    diffs = {
        "image_bytes": np.abs(served["bytes/embeddings"] - ref_image).max(),
        "image_pixels": np.abs(served["pixels/embeddings"] - ref_image).max(),
        "text_strings": np.abs(served["strings/embeddings"] - ref_text).max(),
        "text_ids": np.abs(served["ids/embeddings"] - ref_text).max(),
    }
    probabilities = np.exp(scale * ref_image @ ref_classes.T)
    probabilities /= probabilities.sum(1, keepdims=True)
    diffs["zero_shot_probabilities"] = np.abs(served["zero_shot/probabilities"] - probabilities).max()
    label = "open_clip ViT-B/32 .pt, exported, TF-only serving"
    RESULTS.append((label, keras.backend.backend(), float(diffs["image_bytes"]), float(diffs["text_strings"])))
    print(f"\nPARITY {label} [{keras.backend.backend()}]: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    for name, diff in diffs.items():
        assert diff < 1e-4, f"{name} differs from open_clip by {diff:.3g} (tolerance 1e-4)"
    served_logits = served["bytes/embeddings"] @ served["strings/embeddings"].T
    ref_logits = ref_image @ ref_text.T
    np.testing.assert_array_equal(served_logits.argmax(1), ref_logits.argmax(1))
    np.testing.assert_array_equal(served_logits.argmax(0), ref_logits.argmax(0))
    np.testing.assert_array_equal(served["zero_shot/top_index"], logits.argmax(1))
    np.testing.assert_array_equal(served["zero_shot/top_class"], np.array(CLASSES)[logits.argmax(1)])
