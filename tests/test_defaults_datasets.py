"""The automatic training defaults on two image-caption file sets that no
setting was tuned for (slow): `keras-clip train --data train.csv` with no
--learning-rate and no --epochs must learn each well above chance.

Both sets are written here as PNG files plus a CSV manifest (no network):
- `shapes48`: the shapes set drawn at 48 px (the model sees 32 px), all 30
  colour-shape classes, 1,500 training images, a few bad records;
- `textures`: 10 procedurally drawn pattern classes (stripes, checks, dots,
  rings, ...) in random colours at 32 px, 1,400 training images, 3 caption
  phrasings per class, 4 bad records (missing file, unreadable file, empty
  caption, missing caption).
"""

import json
import os
import time

import numpy as np
import pytest

TEXTURES = [
    "horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard", "polka dots",
    "concentric rings", "grid lines", "colour gradient", "speckled noise", "plain colour",
]
TEXTURE_PHRASES = ["a photo of {}.", "a {} pattern", "{} texture"]


def _texture(kind, size, rng):
    """One `size` x `size` RGB image of pattern `kind` in two random colours."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(4.0, 9.0)
    phase = rng.uniform(0, 2 * np.pi)
    wave = 2 * np.pi / period
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    if kind == "horizontal stripes":
        mask = np.sin(wave * y + phase) > 0
    elif kind == "vertical stripes":
        mask = np.sin(wave * x + phase) > 0
    elif kind == "diagonal stripes":
        mask = np.sin(wave * (x + y * rng.choice([-1, 1])) / np.sqrt(2) + phase) > 0
    elif kind == "checkerboard":
        mask = (np.sin(wave * x + phase) > 0) ^ (np.sin(wave * y + phase) > 0)
    elif kind == "polka dots":
        gx, gy = (x + phase * period) % period - period / 2, (y + phase * period) % period - period / 2
        mask = gx**2 + gy**2 < (0.28 * period) ** 2
    elif kind == "concentric rings":
        mask = np.sin(wave * np.hypot(x - cx, y - cy) + phase) > 0
    elif kind == "grid lines":
        mask = ((x + phase) % period < 1.5) | ((y + phase) % period < 1.5)
    elif kind == "colour gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = ((x - size / 2) * np.cos(angle) + (y - size / 2) * np.sin(angle)) / size + 0.5
        mask = np.clip(t, 0, 1)
    elif kind == "speckled noise":
        mask = rng.random((size, size)) < 0.5
    else:  # plain colour
        mask = np.zeros((size, size), bool)
    a, b = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    while np.abs(a - b).sum() < 180:  # two colours far enough apart to see the pattern
        b = rng.integers(0, 256, size=3).astype(np.float32)
    mask = np.asarray(mask, np.float32)[..., None]
    image = mask * a + (1 - mask) * b + rng.normal(0, 6, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _write(root, name, images, captions, labels, bad=()):
    from PIL import Image

    rows = ["filepath,caption,label"]
    for i, (image, caption, label) in enumerate(zip(images, captions, labels)):
        Image.fromarray(image).save(root / f"{name}-{i}.png")
        rows.append(f"{name}-{i}.png,{caption},{label}")
    rows.extend(bad)
    (root / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return str(root / f"{name}.csv")


def write_textures(root, train=1400, test=300, size=32, seed=0):
    """The textures set under `root`: train.csv (with 4 bad records), test.csv, classes.txt."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", train), ("test", test)):
        labels = rng.integers(0, len(TEXTURES), n)
        images = [_texture(TEXTURES[k], size, rng) for k in labels]
        captions = [rng.choice(TEXTURE_PHRASES).format(TEXTURES[k]) for k in labels]
        bad = []
        if split == "train":
            (root / "broken.png").write_bytes(b"not a png")
            bad = ["missing.png,a checkerboard pattern,3", "broken.png,polka dots texture,4",
                   f"{split}-0.png,,0", f"{split}-1.png"]
        paths[split] = _write(root, split, images, captions, labels, bad)
    (root / "classes.txt").write_text("\n".join(TEXTURES) + "\n")
    return paths["train"], paths["test"], str(root / "classes.txt")


def write_shapes(root, train=1500, test=300, size=48, seed=7):
    """The shapes set at `size` px, every class trainable, under `root`."""
    from keras_clip.data import ShapesDataset

    shapes = ShapesDataset(image_size=size, seed=seed, held_out=())
    paths = {}
    for split, n in (("train", train), ("test", test)):
        data = shapes.generate(split, n)
        bad = ["missing.png,a red circle,0", "broken.png,a blue square,1"] if split == "train" else []
        if split == "train":
            (root / "broken.png").write_bytes(b"\x89PNG truncated")
        paths[split] = _write(root, split, data["images"], data["captions"], data["labels"], bad)
    (root / "classes.txt").write_text("\n".join(shapes.class_names) + "\n")
    return paths["train"], paths["test"], str(root / "classes.txt")


def train_with_defaults(train_csv, test_csv, classes, output_dir):
    """`keras-clip train --data ... --eval-data ... --classes ...`, nothing else set."""
    from keras_clip import cli

    start = time.time()
    code = cli.main(["train", "--data", train_csv, "--eval-data", test_csv, "--classes", classes,
                     "--output-dir", output_dir])
    assert code == 0
    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    metrics["wall_seconds"] = round(time.time() - start, 1)
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("name, write, min_top1", [("textures", write_textures, 0.7), ("shapes48", write_shapes, 0.5)])
def test_defaults_learn_a_file_set_not_tuned_for(name, write, min_top1, tmp_path, capsys):
    root = tmp_path / name
    root.mkdir()
    train_csv, test_csv, classes = write(root)
    metrics = train_with_defaults(train_csv, test_csv, classes, str(tmp_path / "run"))
    printed = capsys.readouterr().out
    with capsys.disabled():
        keys = ("zero_shot_top1", "chance_top1", "learning_rate", "epochs", "steps", "train_seconds", "wall_seconds")
        print(f"\n{name}: " + json.dumps({k: metrics.get(k) for k in keys}))
    assert "(auto:" in printed  # the chosen values are printed at the start
    assert metrics["auto"] and set(metrics["auto"]) >= {"learning_rate", "epochs"}
    assert metrics["train_records_skipped"] >= 2
    # 10x chance is unreachable with 10 classes (chance 0.1): at least 5x chance, and the set's floor.
    assert metrics["zero_shot_top1"] >= min_top1 and metrics["zero_shot_top1"] > 5 * metrics["chance_top1"], metrics
