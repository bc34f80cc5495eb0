"""`keras-clip train --data` / `eval --data` / `report` on image files the test writes."""

import glob
import json
import os

import numpy as np
import pytest
import yaml

from keras_clip import cli

TINY = ["training.batch_size=8", "model.image_encoder.layers=1", "model.text_encoder.layers=1"]


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
    unlabelled = ["filepath,caption"] + [r.rsplit(",", 1)[0] for r in rows[1:7]]
    rows.append("missing.png,a red circle,0")  # a bad record: counted, never fatal
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "unlabelled.csv").write_text("\n".join(unlabelled) + "\n")
    (root / "classes.txt").write_text("\n".join(shapes.class_names) + "\n")
    return root


@pytest.fixture(scope="module")
def file_run(manifest, tmp_path_factory):
    """3 epochs on the manifest, evaluated on it every 2 epochs (after epochs 2 and 3)."""
    out = str(tmp_path_factory.mktemp("run") / "run")
    csv, classes = str(manifest / "train.csv"), str(manifest / "classes.txt")
    settings = TINY + ["training.epochs=3", "eval.every_epochs=2"]
    # Relative paths: the run records them as absolute ones.
    cwd = os.getcwd()
    os.chdir(manifest)
    try:
        code = cli.main(
            ["train", "--data", "train.csv", "--eval-data", "train.csv", "--classes", "classes.txt",
             "--output-dir", out, "--set", *settings]
        )
    finally:
        os.chdir(cwd)
    assert code == 0
    with open(os.path.join(out, "metrics.json")) as f:
        return out, json.load(f), csv, classes


def test_train_and_eval_on_a_manifest_and_eval_is_deterministic(file_run, capsys):
    out, metrics, csv, classes = file_run
    assert metrics["train_records"] == 25 and metrics["train_records_skipped"] == 1
    assert metrics["bad_records"]["skipped"] == 1
    assert metrics["bad_records"]["skipped_by_reason"] == {"missing_file": 1}
    assert any("missing.png" in n for names in metrics["bad_records"]["first_skipped"].values() for n in names)
    assert metrics["num_images"] == 24 and metrics["num_classes"] == 30
    for key in ("zero_shot_top1", "image_to_text_R@1", "text_to_image_R@10"):
        assert 0.0 <= metrics[key] <= 1.0
    with open(os.path.join(out, "config.yaml")) as f:
        data = yaml.safe_load(f)["data"]
    assert (data["train"], data["eval"], data["classes"]) == (csv, csv, classes)
    capsys.readouterr()
    assert cli.main(["eval", out, "--data", csv, "--classes", classes, "--json"]) == 0
    printed = capsys.readouterr().out
    again = json.loads(printed[printed.index("{\n"):])
    # Re-evaluation gives the saved numbers: determinism, not correctness.
    assert again["text_to_image_R@5"] == pytest.approx(metrics["text_to_image_R@5"], abs=1e-6)
    assert again["zero_shot_top1"] == pytest.approx(metrics["zero_shot_top1"], abs=1e-6)


def test_evaluation_during_training_goes_to_history_and_tensorboard(file_run):
    import tensorflow as tf

    out, metrics, _, _ = file_run
    history = metrics["history"]
    assert len(history["loss"]) == 3
    keys = ["zero_shot_top1", "zero_shot_top5", "image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10",
            "text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10"]
    for key in keys:
        values = history[f"val_{key}"]
        assert values[0] is None and None not in values[1:], (key, values)  # evaluated after epochs 2 and 3
        # After the last epoch the callback saw the final weights and the same
        # 24 eval images as the evaluation after training.
        assert values[2] == pytest.approx(metrics[key], abs=1e-6), key
    logged = {}
    for path in glob.glob(os.path.join(out, "logs", "validation", "events.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                logged.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    for key in keys:
        steps = logged[f"epoch_{key}"]
        assert sorted(steps) == [1, 2]  # 0-based epochs 2 and 3
        assert steps[2] == pytest.approx(history[f"val_{key}"][2], abs=1e-6)


class _Shape:
    image_shape = (16, 16, 3)


def _eval_config(eval_data, classes=None, every=2, max_examples=None, max_eval_examples=5000):
    config = {
        "data": {"train": "train.csv", "eval": eval_data, "classes": classes, "templates": None, "strict": False,
                 "max_eval_examples": max_eval_examples},
        "eval": {"every_epochs": every, "batch_size": 64},
    }
    if max_examples is not None:
        config["eval"]["max_examples"] = max_examples
    return config


def test_file_evaluation_callback_is_bounded(manifest):
    from keras_clip.eval.run import training_evaluation as file_evaluation

    csv, classes = str(manifest / "train.csv"), str(manifest / "classes.txt")
    callback = file_evaluation(_eval_config(csv, classes, max_examples=5), _Shape.image_shape, epochs=4)
    assert callback.images.shape == (5, 16, 16, 3) and len(callback.captions) == 5
    assert callback.labels.shape == (5,) and len(callback.class_names) == 30
    assert (callback.every, callback.total_epochs, callback.batch_size) == (2, 4, 64)
    # data.max_eval_examples bounds it too; the default bound is 1000.
    assert len(file_evaluation(_eval_config(csv, max_eval_examples=3), _Shape.image_shape, 4).images) == 3
    assert len(file_evaluation(_eval_config(csv), _Shape.image_shape, 4).images) == 24
    assert file_evaluation(_eval_config(csv, every=0), _Shape.image_shape, 4) is None
    assert file_evaluation(_eval_config(None), _Shape.image_shape, 4) is None
    printed = []
    callback = file_evaluation(_eval_config(str(manifest / "unlabelled.csv"), classes), _Shape.image_shape, 4, printed.append)
    assert callback.labels is None and len(callback.captions) == 6
    assert len(printed) == 1 and "no labels" in printed[0] and "unlabelled.csv" in printed[0]


def test_report_on_a_file_run(file_run, tmp_path, capsys):
    import matplotlib  # noqa: F401  (in the test extra: missing is a failure, not a silent skip)
    from keras_clip.data import load_eval_arrays
    from keras_clip.eval.report import top_images
    from keras_clip.models.builder import load_run_model

    out, metrics, csv, _ = file_run
    pictures = str(tmp_path / "report")
    capsys.readouterr()
    assert cli.main(["report", out, "--output", pictures]) == 0
    printed = capsys.readouterr().out
    for name in ("training_curves.png", "similarity.png", "confusion.png", "retrieval.png"):
        path = os.path.join(pictures, name)
        assert os.path.getsize(path) > 5000, name
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert f"pictures drawn from 24 images of the run's eval data: {csv}" in printed
    assert "skipped" not in printed
    # The retrieval grid ranks the images as the run's evaluation did: with
    # every caption as a query, the share whose own image is in its top 5 is R@5.
    model = load_run_model(out)
    arrays = load_eval_arrays(csv, model.image_shape)
    top = top_images(model, arrays["images"], arrays["captions"], k=5)
    assert top.shape == (24, 5)
    hits = (top == np.arange(24)[:, None]).any(1)
    assert np.mean(hits) == pytest.approx(metrics["text_to_image_R@5"], abs=1e-6)


def test_report_with_other_data_skips_the_confusion_matrix(file_run, manifest, tmp_path, capsys):
    import matplotlib  # noqa: F401  (in the test extra: missing is a failure, not a silent skip)
    out = file_run[0]
    pictures = str(tmp_path / "report")
    unlabelled = str(manifest / "unlabelled.csv")
    capsys.readouterr()
    assert cli.main(["report", out, "--output", pictures, "--data", unlabelled]) == 0
    printed = capsys.readouterr().out
    assert sorted(os.listdir(pictures)) == ["retrieval.png", "similarity.png", "training_curves.png"]
    assert f"pictures drawn from 6 images of --data: {unlabelled}" in printed
    skipped = [line for line in printed.splitlines() if "skipped" in line]
    assert skipped == [f"confusion matrix skipped: --data {unlabelled!r} has no labels (add a `label` column)"]


def test_report_source_precedence_and_missing_data(manifest, tmp_path, capsys):
    from keras_clip.eval.report import report_source

    csv = str(manifest / "train.csv")
    config = {"data": {"train": csv, "eval": str(manifest / "unlabelled.csv")}}
    assert report_source(config) == (config["data"]["eval"], "the run's eval data")
    assert report_source(config, data=csv) == (csv, "--data")
    config["data"]["eval"] = None
    assert report_source(config)[0] == csv
    config["data"]["train"] = str(tmp_path / "moved.csv")
    with pytest.raises(FileNotFoundError, match="moved.csv.*pass --data"):
        report_source(config)
    # Tar shard patterns are not checked here (open_source expands them).
    config["data"]["train"] = str(tmp_path / "shard-{000..002}.tar")
    assert report_source(config)[0] == config["data"]["train"]
