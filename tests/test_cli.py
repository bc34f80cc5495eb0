"""The command line, end to end on a tiny budget (the real recipe is in test_train_shapes.py)."""

import json
import os

import pytest

from keras_clip import cli

TINY_RUN = [
    "training.epochs=1",
    "training.batch_size=16",
    "data.train_examples=64",
    "data.test_examples=32",
    "data.heldout_examples=16",
    "model.image_encoder.layers=1",
    "model.text_encoder.layers=1",
]
METRIC_KEYS = [
    "zero_shot_top1",
    "zero_shot_top5",
    "image_to_text_R@1",
    "image_to_text_R@5",
    "image_to_text_R@10",
    "text_to_image_R@1",
    "text_to_image_R@5",
    "text_to_image_R@10",
    "chance_top1",
    "backend",
    "train_seconds",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    assert cli.main(["train", "--output-dir", out, "--set", *TINY_RUN]) == 0
    return out


def test_train_writes_the_run_directory(run_dir):
    for name in ("model.keras", "config.yaml", "metrics.json", os.path.join("tokenizer", "vocabulary.txt")):
        assert os.path.exists(os.path.join(run_dir, name)), name
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    for key in METRIC_KEYS:
        assert key in metrics, key
    assert metrics["chance_top1"] == pytest.approx(1 / 30)
    assert 0.0 <= metrics["zero_shot_top1"] <= metrics["zero_shot_top5"] <= 1.0


def test_eval_reproduces_the_saved_metrics(run_dir, capsys):
    with open(os.path.join(run_dir, "metrics.json")) as f:
        saved = json.load(f)
    capsys.readouterr()
    assert cli.main(["eval", run_dir, "--json"]) == 0
    printed = capsys.readouterr().out
    again = json.loads(printed[printed.index("{"):])
    for key in METRIC_KEYS[:9]:
        assert again[key] == pytest.approx(saved[key], abs=1e-6), key


def test_unknown_config_key_is_reported(tmp_path, capsys):
    assert cli.main(["train", "--output-dir", str(tmp_path), "--set", "training.epoch=1"]) == 2
    err = capsys.readouterr().err
    assert "training.epoch" in err and "epochs" in err


def test_missing_config_file_is_reported(tmp_path, capsys):
    missing = str(tmp_path / "nope.yaml")
    assert cli.main(["train", "--config", missing, "--output-dir", str(tmp_path)]) == 2
    assert missing in capsys.readouterr().err
