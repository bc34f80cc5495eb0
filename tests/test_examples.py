"""Each example in examples/ runs (shortened) and prints what it claims."""

import os
import re
import subprocess
import sys

import keras

from keras_clip.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=keras.backend.backend())


def _run(script, *args):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *map(str, args)],
        capture_output=True, text=True, env=ENV, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_fit_shapes_prints_zero_shot_accuracy():
    printed = _run("fit_shapes.py", 256, 1)
    match = re.search(r"zero-shot top-1 ([0-9.]+) \(chance ([0-9.]+)\)", printed)
    assert match, printed
    top1, chance = map(float, match.groups())
    assert 0.0 <= top1 <= 1.0 and chance == round(1 / 30, 3)  # 30 colour-shape classes


def test_zero_shot_marks_each_answer_against_the_truth(tmp_path):
    overrides = {
        "training": {"epochs": 1, "batch_size": 16},
        "data": {"train_examples": 64, "test_examples": 16, "heldout_examples": 16},
        "model": {"image_encoder": {"layers": 1}, "text_encoder": {"layers": 1}},
        "eval": {"every_epochs": 0},
    }
    train("shapes", str(tmp_path / "run"), overrides=overrides, verbose=0)
    printed = _run("zero_shot.py", tmp_path / "run", 8)
    image_lines = re.findall(r"image \d+ \(true class: ([a-z ]+)\) -> 'an? ([a-z ]+)' p=[0-9.]+  (right|WRONG)", printed)
    text_lines = re.findall(r"'an? ([a-z ]+)' -> image \d+ \(true class: ([a-z ]+)\)  (right|WRONG)", printed)
    assert len(image_lines) == 8 and text_lines, printed
    for truth, answer, mark in image_lines:
        assert (mark == "right") == (truth == answer)
    for asked, truth, mark in text_lines:
        assert (mark == "right") == (asked == truth)
    totals = [int(n) for n in re.findall(r"(\d+) of \d+ right", printed)]
    assert totals == [sum(m == "right" for *_, m in image_lines), sum(m == "right" for *_, m in text_lines)]
    # Every image's true class is among the candidate texts.
    assert {t for t, _, _ in image_lines} <= {a for a, _, _ in text_lines}
