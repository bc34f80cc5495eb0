import pytest

from keras_clip.config import list_presets, load_config


def test_presets_include_the_architectures_and_objectives():
    names = list_presets()
    for name in ("shapes", "vit-b-32", "vit-b-16", "vit-l-14", "shapes-queue", "shapes-siglip"):
        assert name in names


def test_base_inheritance_and_loss_replacement():
    config = load_config("shapes-queue")
    shapes = load_config("shapes")
    assert config["training"]["batch_size"] == 16
    assert config["training"]["epochs"] == shapes["training"]["epochs"]
    assert config["model"]["queue_size"] == 128 and config["model"]["momentum"] == 0.99
    assert load_config("shapes-queue-no-momentum")["model"]["momentum"] is None
    assert isinstance(config["loss"], list) and len(config["loss"]) == 2


def test_overrides_and_unknown_keys(tmp_path):
    assert load_config("shapes", {"training": {"epochs": 2}})["training"]["epochs"] == 2
    with pytest.raises(KeyError, match="model.image_encoder.patch.*patch_size"):
        load_config("shapes", {"model": {"image_encoder": {"patch": 4}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainig: {}\n")
    with pytest.raises(KeyError, match="'trainig'.*training"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_config(str(tmp_path / "nothere.yaml"))
