"""Inputs and comparisons shared by the parity tests."""

import numpy as np
from keras import ops

from keras_clip.models.clip import CLIP_MEAN, CLIP_STD

END, START = 49407, 49406
# A small OpenAI-layout architecture: patch size, widths, heads, layers and
# context length all differ from ViT-B/32 (heads = width // 64).
SMALL_OPEN_CLIP = {
    "embed_dim": 96,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "layers": 2, "head_width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 192, "heads": 3, "layers": 3},
}
RESULTS = []  # (format, backend, image max abs diff, text max abs diff), printed at the end


def make_inputs(image_size, context_length, n=32, seed=0):
    """`n` random images (pixels in [0, 255], NHWC) and token rows
    `[START, random ids..., END, 0, ...]` with END at varying positions."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, image_size, image_size, 3)).astype("float32")
    tokens = np.zeros((n, context_length), "int32")
    ends = 1 + (np.arange(n) * 7 + 3) % (context_length - 1)  # 1 .. context_length - 1
    for i, end in enumerate(ends):
        tokens[i, 0] = START
        tokens[i, 1:end] = rng.integers(1, START, end - 1)
        tokens[i, end] = END
    return images, tokens


def reference_pixels(images):
    """What the reference models take: normalised pixels, NCHW."""
    x = (images / 255.0 - np.array(CLIP_MEAN, "float32")) / np.array(CLIP_STD, "float32")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype("float32")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def check_parity(model, images, tokens, ref_image, ref_text, label, atol=1e-4):
    """encode_image / encode_text, raw and normalised, within `atol` of the
    reference; identical argmax of the 32x32 logits in both directions."""
    import keras

    ref_image, ref_text = np.asarray(ref_image, "float32"), np.asarray(ref_text, "float32")
    image = ops.convert_to_numpy(model.encode_image(images, normalize=False))
    text = ops.convert_to_numpy(model.encode_text(tokens, normalize=False))
    image_n = ops.convert_to_numpy(model.encode_image(images))
    text_n = ops.convert_to_numpy(model.encode_text(tokens))
    assert image.shape == ref_image.shape and text.shape == ref_text.shape
    diffs = {
        "image": float(np.abs(image - ref_image).max()),
        "text": float(np.abs(text - ref_text).max()),
        "image_normalized": float(np.abs(image_n - _unit(ref_image)).max()),
        "text_normalized": float(np.abs(text_n - _unit(ref_text)).max()),
    }
    RESULTS.append((label, keras.backend.backend(), diffs["image"], diffs["text"]))
    print(f"\nPARITY {label} [{keras.backend.backend()}]: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    for name, diff in diffs.items():
        assert diff < atol, f"{label}: {name} differs by {diff:.3g} (tolerance {atol})"
    logits = image_n @ text_n.T
    ref_logits = _unit(ref_image) @ _unit(ref_text).T
    assert (logits.argmax(1) == ref_logits.argmax(1)).all()
    assert (logits.argmax(0) == ref_logits.argmax(0)).all()
    return diffs
