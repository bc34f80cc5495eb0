"""Every objective's shipped config trains the shapes model through `fit` (a few steps)."""

import math

import numpy as np
import pytest

from keras_clip.config import list_presets, load_config
from keras_clip.losses import get as losses_get
from keras_clip.train import train

OBJECTIVE_CONFIGS = sorted(name for name in list_presets() if name.startswith("shapes-"))

# Same recipe, tiny budget: 4 steps of 8 pairs with one-layer towers. Without
# XLA: on JAX compiling each config's step costs ~10 s, running 4 steps op by
# op ~2 s (the compiled path is trained in tests/models on every backend).
TINY = {
    "model": {"image_encoder": {"layers": 1}, "text_encoder": {"layers": 1}},
    "data": {"train_examples": 32, "test_examples": 16, "heldout_examples": 8},
    "training": {"epochs": 1, "batch_size": 8, "jit_compile": False},
    "eval": {"every_epochs": 0},
}


def test_every_objective_has_a_config():
    assert {
        "shapes-dcl", "shapes-supcon", "shapes-filip", "shapes-slip", "shapes-siglip",
        "shapes-queue", "shapes-mlp-heads",
    } <= set(OBJECTIVE_CONFIGS)


def _without_names(config):
    """A loss config without its (auto-numbered) object names, at every depth."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_without_names(v) for v in config]
    return config


@pytest.mark.parametrize("name", OBJECTIVE_CONFIGS)
def test_objective_config_trains(name):
    config = load_config(name)
    model, metrics = train(name, None, overrides=TINY, verbose=0)
    losses = metrics["history"]["loss"]
    assert len(losses) == 1 and math.isfinite(losses[0]), losses
    # The shipped config's features are really in the trained model.
    assert model.queue_size == config["model"]["queue_size"]
    assert model.momentum == config["model"]["momentum"]
    assert model.return_tokens == (name == "shapes-filip")
    expected = losses_get(config["loss"])
    assert type(model.contrastive_loss) is type(expected)
    assert _without_names(model.contrastive_loss.get_config()) == _without_names(expected.get_config())
    assert np.isfinite(metrics["zero_shot_top1"])
