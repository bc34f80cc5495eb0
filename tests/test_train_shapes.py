"""Training to accuracy on the embedded shapes set: the default recipe, unchanged."""

import json
import os

import pytest

from keras_clip.eval.run import evaluate_run
from keras_clip.train import train


@pytest.mark.slow
def test_default_recipe_reaches_zero_shot_target(tmp_path):
    model, metrics = train("shapes", str(tmp_path), verbose=2)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=1))
    assert metrics["zero_shot_top1"] >= 0.90, metrics
    assert metrics["heldout_zero_shot_top1"] > 3 * metrics["chance_top1"], metrics
    assert metrics["image_to_text_R@10"] > 10 / 1000 * 3  # well above chance on 1000 test pairs
    again = evaluate_run(str(tmp_path))
    assert again["zero_shot_top1"] == pytest.approx(metrics["zero_shot_top1"], abs=1e-6)
    assert os.path.exists(os.path.join(tmp_path, "model.keras"))
