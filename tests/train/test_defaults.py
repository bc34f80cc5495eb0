"""The automatic learning rate and epochs (keras_clip/train/defaults.py): the
rule's values, explicit values always win, the printed line, and the values a
run records."""

import pytest

from keras_clip.config import load_config
from keras_clip.train import defaults as d
from keras_clip.train.train import resolve_auto_settings


def _training(**values):
    return {"batch_size": 64, "learning_rate": "auto", "epochs": "auto", "warmup_fraction": 0.05, **values}


@pytest.mark.parametrize("batch, lr", [(64, 5e-4), (128, 1e-3), (256, 2e-3), (16, 1.25e-4)])
def test_learning_rate_scales_linearly_with_the_batch(batch, lr):
    values, notes = d.resolve_training(_training(batch_size=batch), num_records=10_000)
    assert values["learning_rate"] == pytest.approx(lr, rel=1e-12)
    assert notes["learning_rate"] == f"2e-03 x {batch}/256"


@pytest.mark.parametrize("records, epochs", [(1_400, 46), (1_500, 43), (64_000, 3), (6_400, 10), (100, 100), (10**7, 3)])
def test_epochs_come_from_the_data_size_within_the_bounds(records, epochs):
    values, notes = d.resolve_training(_training(), num_records=records)
    assert values["epochs"] == epochs  # ceil(64,000 / records) within [3, 100]
    assert f"{records:,} records" in notes["epochs"]
    assert f"{max(records // 64, 1) * epochs:,} steps" in notes["epochs"]


def test_explicit_values_win_and_get_no_note():
    values, notes = d.resolve_training(_training(learning_rate=3e-4, epochs=7), num_records=1_400)
    assert values == {"learning_rate": 3e-4, "epochs": 7} and notes == {}
    values, notes = d.resolve_training(_training(epochs=7, learning_rate=None), num_records=1_400)
    assert values == {"learning_rate": 5e-4, "epochs": 7} and set(notes) == {"learning_rate"}


def test_builtin_shapes_set_keeps_the_recipe():
    values, notes = d.resolve_training(_training(batch_size=16), num_records=6_000, builtin=True)
    assert values == {"learning_rate": 0.002, "epochs": 20}
    assert notes == {"learning_rate": "the shapes recipe", "epochs": "the shapes recipe"}


@pytest.mark.parametrize("key, value", [("epochs", "10"), ("epochs", 2.5), ("learning_rate", -1.0), ("learning_rate", "fast")])
def test_bad_values_are_named(key, value):
    with pytest.raises(ValueError, match=f"training.{key}' .*or 'auto' .*received {value!r}"):
        d.resolve_training(_training(**{key: value}), num_records=1_000)


def test_printed_line():
    values, notes = d.resolve_training(_training(), num_records=1_402)
    line = d.describe_choice(values, notes, 0.05)
    assert line == (
        "Training: learning rate 5.0e-04 (auto: 2e-03 x 64/256), 46 epochs "
        "(auto: ~64,000 examples seen: 966 steps for 1,402 records), warmup 5% of the steps"
    )
    values, notes = d.resolve_training(_training(learning_rate=0.01, epochs=3), num_records=1_402)
    assert d.describe_choice(values, notes, 0.1) == (
        "Training: learning rate 1.0e-02 (set), 3 epochs (set), warmup 10% of the steps"
    )


def test_run_config_gets_the_resolved_values(tmp_path):
    rows = ["filepath,caption"] + [f"{i}.png,a caption {i}" for i in range(300)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    config = load_config(None, {"data": {"train": str(tmp_path / "train.csv")}, "training": {"batch_size": 32}})
    resolved, notes = resolve_auto_settings(config)
    assert resolved["training"]["learning_rate"] == pytest.approx(2.5e-4)
    assert resolved["training"]["epochs"] == 100  # ceil(64,000 / 300) = 214, capped at 100
    assert set(notes) == {"learning_rate", "epochs"}
    assert config["training"]["epochs"] == "auto"  # the input is not changed
    shapes, notes = resolve_auto_settings(load_config("shapes"))
    assert (shapes["training"]["learning_rate"], shapes["training"]["epochs"]) == (0.002, 20)
    same, notes = resolve_auto_settings(load_config("shapes", {"training": {"epochs": 2, "learning_rate": 0.01}}))
    assert (same["training"]["learning_rate"], same["training"]["epochs"], notes) == (0.01, 2, {})


def test_make_optimizer_refuses_an_unresolved_learning_rate():
    from keras_clip.train.optimizer import make_optimizer

    with pytest.raises(ValueError, match="received 'auto'.*resolve_training"):
        make_optimizer(_training(), 100)
