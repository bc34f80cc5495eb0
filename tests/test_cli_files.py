"""`keras-clip train --data` / `eval --data` on image files the test writes."""

import json
import os

import pytest

from keras_clip import cli

TINY = ["training.epochs=1", "training.batch_size=8", "model.image_encoder.layers=1", "model.text_encoder.layers=1"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from PIL import Image

    from keras_clip.data import ShapesDataset

    root = tmp_path_factory.mktemp("files")
    shapes = ShapesDataset(image_size=40, seed=3)
    data = shapes.generate("test", 24)
    rows = ["filepath,caption,label"]
    for i, (image, caption, label) in enumerate(zip(data["images"], data["captions"], data["labels"])):
        Image.fromarray(image).save(root / f"{i}.png")
        rows.append(f"{i}.png,{caption},{label}")
    rows.append("missing.png,a red circle,0")  # a bad record: counted, never fatal
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "classes.txt").write_text("\n".join(shapes.class_names) + "\n")
    return root


def test_train_and_eval_on_a_manifest(manifest, tmp_path, capsys):
    out = str(tmp_path / "run")
    csv = str(manifest / "train.csv")
    classes = str(manifest / "classes.txt")
    assert cli.main(["train", "--data", csv, "--eval-data", csv, "--classes", classes, "--output-dir", out, "--set", *TINY]) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["train_images"] == 25
    assert metrics["bad_records"]["total_counts"] == {"missing_file": 1}
    assert any("missing.png" in n for names in metrics["bad_records"]["total_names"].values() for n in names)
    assert metrics["num_images"] == 24 and metrics["num_classes"] == 30
    for key in ("zero_shot_top1", "image_to_text_R@1", "text_to_image_R@10"):
        assert 0.0 <= metrics[key] <= 1.0
    capsys.readouterr()
    assert cli.main(["eval", out, "--data", csv, "--classes", classes, "--json"]) == 0
    printed = capsys.readouterr().out
    again = json.loads(printed[printed.index("{\n"):])
    assert again["text_to_image_R@5"] == pytest.approx(metrics["text_to_image_R@5"], abs=1e-6)
    assert again["zero_shot_top1"] == pytest.approx(metrics["zero_shot_top1"], abs=1e-6)
