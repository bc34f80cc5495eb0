"""The "shapes" kind: the embedded synthetic data set (`ShapesDataset`), as a source.

Spec: `{"kind": "shapes", "split": "train" | "test" | "heldout",
"num_examples": N, "image_size": S, "seed": 0, "two_shape_fraction": 0.3}`
(optional `"held_out"`: class names kept out of training). The images are
generated once, on first use, from the seed alone.
"""

import numpy as np

from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.pipeline import make_dataset, pretokenized_dataset, tokenize_all
from keras_clip.data.shapes import DEFAULT_HELD_OUT, PROMPT_TEMPLATES, ShapesDataset
from keras_clip.data.sources.base import DataSource, register_source
from keras_clip.data.transforms import as_size


class ShapesSource(DataSource):
    """One split of the coloured-shapes data set.

    Args:
        split: "train", "test" or "heldout" (see `ShapesDataset.generate`).
        num_examples: int > 0.
        image_size: int >= 16, the side of the images.
        seed: int, the data set's seed (not the training seed).
        two_shape_fraction: float in [0, 1] (train split).
        held_out: class names never in the train split.

    Every image has one caption and a label (the class index; -1 for the
    train split's two-shape images). `class_names` and `templates` are the
    data set's, for zero-shot evaluation.
    """

    has_labels = True

    def __init__(self, split="train", num_examples=1000, image_size=64, seed=0,
                 two_shape_fraction=0.3, held_out=DEFAULT_HELD_OUT):
        self.shapes = ShapesDataset(
            image_size=image_size, held_out=held_out, seed=seed, two_shape_fraction=two_shape_fraction
        )
        if split not in self.shapes.splits:
            raise ValueError(f"Unknown shapes split {split!r}; valid splits: {list(self.shapes.splits)}.")
        if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples <= 0:
            raise ValueError(f"num_examples must be a positive int; received {num_examples!r}.")
        self.split = split
        self.image_size = int(image_size)
        self._num_examples = int(num_examples)
        self.class_names = list(self.shapes.class_names)
        self.templates = list(PROMPT_TEMPLATES)
        self._data = None
        self._token_ids = None  # (tokenizer, ids of every caption): a training run's epochs share them

    @classmethod
    def open(cls, spec=None, strict=False, **options):
        if spec is not None:
            raise TypeError(f"A shapes source is given as a dict spec, not a path; received {spec!r}.")
        return cls(**options)

    def __repr__(self):
        return (
            f"ShapesSource(split={self.split!r}, num_examples={self._num_examples}, "
            f"image_size={self.image_size}, seed={self.shapes.seed})"
        )

    @property
    def data(self):
        """The generated split: `ShapesDataset.generate(split, num_examples)`."""
        if self._data is None:
            self._data = self.shapes.generate(self.split, self._num_examples)
        return self._data

    @property
    def num_records(self):
        return self._num_examples

    def captions(self):
        """This split's captions, then every prompt (template x class), in
        the order the shapes recipe has always built its vocabulary from."""
        return list(self.data["captions"]) + [t.format(c) for c in self.class_names for t in self.templates]

    def _check_shape(self, image_shape):
        size = as_size(image_shape)
        if size != (self.image_size, self.image_size):
            raise ValueError(
                f"The shapes source makes {self.image_size}x{self.image_size} images but image_shape is "
                f"{tuple(image_shape) if not isinstance(image_shape, int) else image_shape!r}; pass "
                f'"image_size": {size[0]} in its spec, or build the model for {self.image_size}-pixel images.'
            )

    def dataset(
        self, tokenizer, image_shape, batch_size, *, training, seed, epoch=None,
        strict=False, report=None, image_views=False,
    ):
        """Batches of `{"images", "token_ids", "labels"[, "image_views"]}`.

        Training with `epoch=E`: the split in the order
        `np.random.default_rng([seed, E]).permutation(N)`, batched without
        further shuffling, views keyed by `seed * 100_003 + E` (a resumed
        run sees exactly the batches an uninterrupted one would). Training
        without an epoch: one dataset reshuffled at every iteration.
        Evaluation: the split in order, the last batch kept. There are no
        bad records (`strict`, `report` are accepted for the interface).
        """
        self._check_shape(image_shape)
        data = self.data
        images, captions, labels = data["images"], data["captions"], data["labels"]
        if training and epoch is not None and not image_views:
            # The captions are fixed per example: tokenized once for all epochs.
            order = np.random.default_rng([int(seed), int(epoch)]).permutation(len(captions))
            dataset = pretokenized_dataset(images[order], self._ids(tokenizer)[order], batch_size, labels[order])
        elif training and epoch is not None:
            order = np.random.default_rng([int(seed), int(epoch)]).permutation(len(captions))
            dataset = make_dataset(
                images[order], [captions[i] for i in order], tokenizer, batch_size,
                labels=labels[order], shuffle=False, seed=int(seed) * 100_003 + int(epoch),
                image_views=image_views,
            )
        else:
            dataset = make_dataset(
                images, captions, tokenizer, batch_size, labels=labels, shuffle=bool(training),
                seed=seed, drop_remainder=bool(training), image_views=image_views,
            )
        dataset.bad_records = BadRecordReport() if report is None else report
        dataset.source = self
        return dataset

    def _ids(self, tokenizer):
        if self._token_ids is None or self._token_ids[0] is not tokenizer:
            self._token_ids = (tokenizer, tokenize_all(self.data["captions"], tokenizer))
        return self._token_ids[1]

    def eval_arrays(self, image_shape, max_examples=None, strict=False):
        """The split's images, captions (one per image) and labels;
        `text_to_image` is `arange(N)`."""
        self._check_shape(image_shape)
        data = self.data
        count = len(data["captions"]) if max_examples is None else min(int(max_examples), len(data["captions"]))
        return {
            "images": data["images"][:count],
            "captions": list(data["captions"][:count]),
            "labels": data["labels"][:count],
            "text_to_image": np.arange(count, dtype=np.int32),
            "report": BadRecordReport(),
        }


register_source("shapes", ShapesSource)
