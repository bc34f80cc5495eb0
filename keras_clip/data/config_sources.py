"""The data sources a run config names: its training source and, for the
shapes recipe, its evaluation splits. Used by training, evaluation and
reports, so the shapes-or-files choice is made here once."""

import numpy as np

from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.image_pipeline import image_text_dataset
from keras_clip.data.pipeline import make_dataset
from keras_clip.data.shapes import ShapesDataset
from keras_clip.data.sources import open_source


class _ShapesSplit:
    """One split of the shapes set (interim adapter until data/sources/ lands)."""

    kind = "shapes"
    has_labels = True

    def __init__(self, split, num_examples, image_size, seed=0, two_shape_fraction=0.3):
        self.shapes = ShapesDataset(image_size=image_size, seed=seed, two_shape_fraction=two_shape_fraction)
        self.split = self.shapes.generate(split, num_examples)
        self.class_names = list(self.shapes.class_names)
        self.templates = list(self.shapes.prompt_templates)

    @property
    def num_records(self):
        return len(self.split["captions"])

    def captions(self):
        return list(self.split["captions"]) + [t.format(c) for c in self.class_names for t in self.templates]

    def dataset(self, tokenizer, image_shape, batch_size, *, training, seed, epoch=None, strict=False, report=None, image_views=False):
        # Each epoch's order is a NumPy permutation keyed by (seed, epoch): a
        # resumed run sees exactly the batches an uninterrupted one would.
        order = np.random.default_rng([int(seed), int(epoch or 0)]).permutation(self.num_records)
        return make_dataset(
            self.split["images"][order], [self.split["captions"][i] for i in order], tokenizer, batch_size,
            labels=self.split["labels"][order], shuffle=False, seed=int(seed) * 100_003 + int(epoch or 0),
            image_views=image_views,
        )

    def eval_arrays(self, image_shape, max_examples=None, strict=False):
        n = self.num_records if max_examples is None else min(self.num_records, int(max_examples))
        return {
            "images": self.split["images"][:n], "captions": list(self.split["captions"][:n]),
            "text_to_image": np.arange(n), "labels": self.split["labels"][:n], "report": None,
        }


class _FileSource:
    """A manifest, folder or shards (interim adapter until data/sources/ lands)."""

    class_names = None
    templates = None

    def __init__(self, spec, strict=False):
        self.spec = spec
        self.source = open_source(spec, strict=strict)
        self.has_labels = self.source.has_labels

    @property
    def num_records(self):
        return len(self.source.records) if hasattr(self.source, "records") else None

    def captions(self):
        if hasattr(self.source, "records"):
            return [c for r in self.source.records for c in r.captions]
        return [c for s in self.source.iter_samples(report=BadRecordReport(log=False)) for c in s.captions]

    def dataset(self, tokenizer, image_shape, batch_size, *, training, seed, epoch=None, strict=False, report=None, image_views=False):
        return image_text_dataset(
            self.source, tokenizer, image_shape, batch_size, training=training,
            seed=seed, epoch=epoch, strict=strict, report=report,
        )


def _shapes_spec(config, split):
    data_cfg = config["data"]
    return dict(
        split=split,
        num_examples=int(data_cfg[f"{split}_examples"]),
        image_size=int(config["model"]["image_encoder"]["image_size"]),
        seed=int(data_cfg["seed"]),
        two_shape_fraction=float(data_cfg["two_shape_fraction"]),
    )


def _check_name(config):
    name = config["data"]["name"]
    if name != "shapes":
        raise ValueError(f"Unknown data set {name!r}; built in: ['shapes']. Train on files with data.train (--data).")


def train_source(config):
    """The training source of a config: `data.train` files, else the shapes set."""
    data_cfg = config["data"]
    if data_cfg["train"]:
        return _FileSource(data_cfg["train"], strict=bool(data_cfg["strict"]))
    _check_name(config)
    return _ShapesSplit(**_shapes_spec(config, "train"))


def shapes_eval_sources(config):
    """[(metric prefix, source)] of the shapes recipe: test ("") and heldout ("heldout_")."""
    _check_name(config)
    return [("", _ShapesSplit(**_shapes_spec(config, "test"))), ("heldout_", _ShapesSplit(**_shapes_spec(config, "heldout")))]
