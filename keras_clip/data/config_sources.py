"""The data sources a run config names: its training source and, for the
shapes recipe, its evaluation splits. Training, evaluation and reports use
these, so the shapes-or-files choice is made here, once; everything
downstream talks to a `DataSource`."""

from keras_clip.data.sources import open_source


def _shapes_spec(config, split, image_size=None):
    data_cfg = config["data"]
    return {
        "kind": "shapes",
        "split": split,
        "num_examples": int(data_cfg[f"{split}_examples"]),
        "image_size": int(image_size or config["model"]["image_encoder"]["image_size"]),
        "seed": int(data_cfg["seed"]),
        "two_shape_fraction": float(data_cfg["two_shape_fraction"]),
    }


def _check_name(config):
    name = config["data"]["name"]
    if name != "shapes":
        raise ValueError(
            f"Unknown data set data.name={name!r}; built in: ['shapes']. Train on your own files with "
            "data.train (--data)."
        )


def train_source(config, image_size=None):
    """The training source of a config: `data.train` (a manifest, an image
    folder, tar shards, or a `{"kind": ...}` dict) when set, else the shapes
    set, drawn at `image_size` (default: the config's model image size)."""
    data_cfg = config["data"]
    if data_cfg["train"]:
        return open_source(data_cfg["train"], strict=bool(data_cfg["strict"]))
    _check_name(config)
    return open_source(_shapes_spec(config, "train", image_size))


def shapes_eval_sources(config, image_size=None):
    """[(metric prefix, source)] of the shapes recipe: test ("") and heldout ("heldout_")."""
    _check_name(config)
    return [
        ("", open_source(_shapes_spec(config, "test", image_size))),
        ("heldout_", open_source(_shapes_spec(config, "heldout", image_size))),
    ]


def describe(source):
    """A short name of a source for messages."""
    return getattr(source, "path", None) or getattr(source, "patterns", None) or repr(source)
