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


def test_re_evaluation_is_deterministic(run_dir, capsys):
    """Re-evaluating the run gives the numbers training saved. This shows
    determinism (same model, data and code, same numbers), not correctness."""
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


def _write_pngs(folder, images):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, f"img{i}.png")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def test_predict_ranks_texts_and_images(run_dir, tmp_path, capsys):
    from keras_clip.data import ShapesDataset
    from keras_clip.eval.predict import rank_images, rank_texts
    from keras_clip.models.builder import load_run_model

    images = ShapesDataset(image_size=32, seed=7).generate("test", 3)["images"]
    paths = _write_pngs(str(tmp_path / "imgs"), images)
    model = load_run_model(run_dir)
    ranked = rank_texts(model, paths[0], ["a red circle", "a blue square", "a green cross"])
    assert sorted(t for t, _ in ranked) == ["a blue square", "a green cross", "a red circle"]
    assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-5)
    assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    ranked_images = rank_images(model, "a red circle", paths)
    assert sorted(p for p, _ in ranked_images) == sorted(paths)

    capsys.readouterr()
    assert cli.main(["predict", run_dir, "--image", paths[0], "--texts", "a red circle", "a blue square"]) == 0
    assert "p=" in capsys.readouterr().out
    assert cli.main(["predict", run_dir, "--text", "a red circle", "--images", str(tmp_path / "imgs")]) == 0
    assert "img" in capsys.readouterr().out
    assert cli.main(["predict", run_dir, "--text", "x", "--images", str(tmp_path / "none")]) == 2
    assert "Image folder not found" in capsys.readouterr().err


def test_report_writes_pictures(run_dir, tmp_path):
    import matplotlib  # noqa: F401  (in the test extra: missing is a failure, not a silent skip)
    out = str(tmp_path / "report")
    assert cli.main(["report", run_dir, "--output", out]) == 0
    for name in ("training_curves.png", "similarity.png", "confusion.png", "retrieval.png"):
        path = os.path.join(out, name)
        assert os.path.getsize(path) > 5000, name
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
