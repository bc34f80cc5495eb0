"""The embedded synthetic image-caption data set: coloured shapes.

Small RGB images with one or two coloured shapes on a dark background,
with varied, truthful captions. Generated on the fly from a seed (numpy
only, no downloads), so every backend and every machine sees the same data.
"""

import numpy as np

from keras_clip.data.shape_drawing import SHAPE_NAMES, _coverage, shape_mask  # noqa: F401
from keras_clip.data.shape_captions import (  # noqa: F401
    PROMPT_TEMPLATES,
    fix_articles,
    sample_captions,
)

# name -> RGB. Chosen to be far apart in RGB (and hue) so the colour named
# in a caption is unambiguous even after the small per-shape jitter.
COLORS = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 95, 235),
    "yellow": (240, 225, 40),
    "purple": (160, 60, 215),
    "orange": (250, 140, 20),
}
COLOR_NAMES = tuple(COLORS)

# One held-out combination per shape and per colour except orange, so every
# colour and every shape still appears in training (compositional check).
DEFAULT_HELD_OUT = (
    "red triangle",
    "green ring",
    "blue cross",
    "yellow circle",
    "purple square",
)

SPLITS = ("train", "test", "heldout")
_SPLIT_STREAM = {"train": 0, "test": 1, "heldout": 2}

# Radius as a fraction of the image side.
_SMALL_RADIUS = (0.12, 0.16)
_LARGE_RADIUS = (0.21, 0.26)
_COLOR_JITTER = 12  # max per-channel colour offset of a shape
_BACKGROUND_LEVEL = (0, 40)  # dark grey level of the plain background
_NOISE_STD = 3.0  # pixel noise over the whole image
_CHUNK = 1024  # images rendered at once (bounds memory)


class ShapesDataset:
    """Coloured-shape images with captions, for CLIP training and zero-shot.

    Each image is `image_size` x `image_size` RGB, a plain dark background
    (grey level 0-40, slight noise) with one shape, or two non-overlapping
    shapes, in one of `COLOR_NAMES` x `SHAPE_NAMES`, small or large, anywhere
    in the image.

    Classes are the (colour, shape) combinations, `class_names[i]` like
    `"red circle"`, ordered colour-major:
    `index = color_index * len(SHAPE_NAMES) + shape_index`.
    `held_out` combinations never appear in the "train" split (not even as
    one of two shapes); they form the "heldout" split, for a compositional
    zero-shot check (every colour and every shape is still seen in
    training with the default list).

    Captions are picked at random per example from several templates, and
    only use words true of the image: colour, shape, size (small / large),
    position ("in the top left", "at the bottom", "in the center", used
    only when the centre is clearly in that region) and, for two shapes,
    the relation along the axis where they are furthest apart ("to the
    left of", "to the right of", "above", "below").

    Args:
        image_size: int, at least 16 (32 or more keeps small shapes
            recognisable). Side of the square images.
        held_out: sequence of class names excluded from training.
        seed: int. Same seed -> identical output for every split.
        two_shape_fraction: float in [0, 1]. Fraction of "train" images
            that hold two shapes.

    Example:
    ```python
    data = ShapesDataset(image_size=64, seed=0)
    train = data.generate("train", 10_000)
    train["images"].shape, train["captions"][0]
    # ((10000, 64, 64, 3), 'a picture of a small green square in the bottom left')
    prompts = data.zero_shot_prompts()  # one list of prompts per class
    ```
    """

    prompt_templates = list(PROMPT_TEMPLATES)
    color_names = list(COLOR_NAMES)
    shape_names = list(SHAPE_NAMES)
    splits = SPLITS

    def __init__(
        self,
        image_size=64,
        held_out=DEFAULT_HELD_OUT,
        seed=0,
        two_shape_fraction=0.3,
    ):
        if not isinstance(image_size, (int, np.integer)) or image_size < 16:
            raise ValueError(
                f"image_size must be an int >= 16; received {image_size!r}."
            )
        if not 0.0 <= float(two_shape_fraction) <= 1.0:
            raise ValueError(
                "two_shape_fraction must be in [0, 1]; received "
                f"{two_shape_fraction!r}."
            )
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.two_shape_fraction = float(two_shape_fraction)
        self.class_names = [f"{c} {s}" for c in COLOR_NAMES for s in SHAPE_NAMES]

        if isinstance(held_out, str):
            held_out = [held_out]
        held_out_classes = []
        for name in held_out:
            if name not in self.class_names:
                raise ValueError(
                    f"held_out contains {name!r}, which is not a class name. "
                    f"Valid names: {self.class_names}."
                )
            index = self.class_names.index(name)
            if index not in held_out_classes:
                held_out_classes.append(index)
        self.held_out_classes = sorted(held_out_classes)
        self.seen_classes = [
            i
            for i in range(len(self.class_names))
            if i not in set(self.held_out_classes)
        ]
        if len(self.seen_classes) < 2:
            raise ValueError(
                f"held_out leaves {len(self.seen_classes)} classes for "
                "training; at least 2 are needed. Hold out fewer classes."
            )

    # ------------------------------------------------------------------ #
    # Public API
    # ------------------------------------------------------------------ #
    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def held_out_names(self):
        return [self.class_names[i] for i in self.held_out_classes]

    def class_color_shape(self, class_index):
        """class index -> (colour name, shape name)."""
        color_id, shape_id = divmod(int(class_index), len(SHAPE_NAMES))
        return COLOR_NAMES[color_id], SHAPE_NAMES[shape_id]

    def zero_shot_prompts(self, class_names=None):
        """One list of prompts per class: `templates` filled with the name.

        Args:
            class_names: list of str, defaults to all `class_names`.

        Returns:
            list (one per class) of lists of str (one per template).
        """
        if class_names is None:
            class_names = self.class_names
        if isinstance(class_names, str):
            class_names = [class_names]
        return [
            [fix_articles(t.format(name)) for t in self.prompt_templates]
            for name in class_names
        ]

    def generate(self, split, num_examples):
        """Generates `num_examples` images and captions of one split.

        Args:
            split: "train" (seen classes, a `two_shape_fraction` of
                two-shape images), "test" (single-shape images of seen
                classes, an independent random stream) or "heldout"
                (single-shape images of held-out classes).
            num_examples: int > 0.

        Returns:
            dict with
            - "images": uint8 (N, H, W, 3);
            - "captions": list of N str;
            - "labels": int32 (N,), class index, -1 for two-shape images;
            - "two_shapes": bool (N,);
            and metadata describing what was drawn (second shape -1 / 0 when
            absent): "color_ids" int32 (N, 2), "shape_ids" int32 (N, 2),
            "class_ids" int32 (N, 2), "centers" float32 (N, 2, 2) as (x, y)
            pixels, "radii" float32 (N, 2).
        """
        if split not in SPLITS:
            raise ValueError(
                f"Unknown split {split!r}; valid splits: {list(SPLITS)}."
            )
        if (
            not isinstance(num_examples, (int, np.integer))
            or isinstance(num_examples, bool)
            or num_examples <= 0
        ):
            raise ValueError(
                f"num_examples must be a positive int; received {num_examples!r}."
            )
        if split == "heldout" and not self.held_out_classes:
            raise ValueError(
                "The 'heldout' split is empty because no classes are held "
                "out (held_out=()); pass held_out class names to "
                "ShapesDataset to use it."
            )
        n = int(num_examples)
        rng = np.random.default_rng([self.seed, _SPLIT_STREAM[split]])
        layout = self._sample_layout(rng, split, n)
        images = self._render(rng, layout)
        captions = sample_captions(rng, layout, self.class_names, self.image_size)
        labels = np.where(layout["two_shapes"], -1, layout["class_ids"][:, 0])
        return {
            "images": images,
            "captions": captions,
            "labels": labels.astype(np.int32),
            "two_shapes": layout["two_shapes"],
            "color_ids": layout["color_ids"],
            "shape_ids": layout["shape_ids"],
            "class_ids": layout["class_ids"],
            "centers": layout["centers"],
            "radii": layout["radii"],
        }

    # ------------------------------------------------------------------ #
    # Sampling
    # ------------------------------------------------------------------ #
    def _sample_layout(self, rng, split, n):
        size = self.image_size
        pool = np.asarray(
            self.held_out_classes if split == "heldout" else self.seen_classes
        )
        if split == "train":
            two_shapes = rng.random(n) < self.two_shape_fraction
        else:
            two_shapes = np.zeros(n, dtype=bool)

        first = pool[rng.integers(0, len(pool), n)]
        # Second class: any other seen class (offset avoids repeating first).
        second = np.full(n, -1, dtype=np.int64)
        if two_shapes.any():
            position = np.searchsorted(pool, first)
            offset = rng.integers(1, len(pool), n)
            second_all = pool[(position + offset) % len(pool)]
            second = np.where(two_shapes, second_all, -1)
        class_ids = np.stack([first, second], axis=1).astype(np.int32)

        # Sizes: half the shapes are large, but at most one of two shapes.
        large = rng.random((n, 2)) < 0.5
        large[:, 1] &= ~large[:, 0]
        fractions = np.where(
            large,
            rng.uniform(*_LARGE_RADIUS, (n, 2)),
            rng.uniform(*_SMALL_RADIUS, (n, 2)),
        )
        radii = (fractions * size).astype(np.float32)
        radii[~two_shapes, 1] = 0.0

        centers = self._sample_centers(rng, radii, two_shapes)

        color_ids, shape_ids = np.divmod(np.maximum(class_ids, 0), len(SHAPE_NAMES))
        color_ids = np.where(class_ids >= 0, color_ids, -1).astype(np.int32)
        shape_ids = np.where(class_ids >= 0, shape_ids, -1).astype(np.int32)
        return {
            "two_shapes": two_shapes,
            "class_ids": class_ids,
            "color_ids": color_ids,
            "shape_ids": shape_ids,
            "large": large & (radii > 0),
            "radii": radii,
            "centers": centers,
        }

    def _sample_centers(self, rng, radii, two_shapes):
        """(n, 2, 2) centres keeping shapes inside and apart (rejection)."""
        size = self.image_size
        n = radii.shape[0]
        margin = 1.0

        def uniform_center(r):
            low = r + margin
            high = size - r - margin
            return low[:, None] + rng.random((len(r), 2)) * (high - low)[:, None]

        centers = np.zeros((n, 2, 2), dtype=np.float32)
        centers[:, 0] = uniform_center(radii[:, 0])
        todo = np.flatnonzero(two_shapes)
        gap = 0.06 * size  # empty space between the two shapes
        for _ in range(10000):
            if todo.size == 0:
                break
            # Re-draw both centres: a large first shape in the middle may
            # leave no room for the second.
            first = uniform_center(radii[todo, 0])
            second = uniform_center(radii[todo, 1])
            distance = np.linalg.norm(second - first, axis=1)
            ok = distance >= radii[todo, 0] + radii[todo, 1] + gap
            centers[todo[ok], 0] = first[ok]
            centers[todo[ok], 1] = second[ok]
            todo = todo[~ok]
        if todo.size:  # pragma: no cover - geometrically always possible
            raise RuntimeError("Could not place two non-overlapping shapes.")
        return centers

    # ------------------------------------------------------------------ #
    # Rendering
    # ------------------------------------------------------------------ #
    def _render(self, rng, layout):
        size = self.image_size
        n = layout["radii"].shape[0]
        palette = np.asarray([COLORS[c] for c in COLOR_NAMES], np.float32)
        background = rng.uniform(*_BACKGROUND_LEVEL, n).astype(np.float32)
        jitter = rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, (n, 2, 3))
        colors = (palette[np.maximum(layout["color_ids"], 0)] + jitter).astype(
            np.float32
        )  # (n, 2, 3)
        images = np.empty((n, size, size, 3), dtype=np.uint8)
        for begin in range(0, n, _CHUNK):
            end = min(begin + _CHUNK, n)
            canvas = np.broadcast_to(
                background[begin:end, None, None, None], (end - begin, size, size, 3)
            ).copy()
            for slot in (0, 1):
                for shape_id in range(len(SHAPE_NAMES)):
                    for large in (False, True):
                        rows = np.flatnonzero(
                            (layout["shape_ids"][begin:end, slot] == shape_id)
                            & (layout["large"][begin:end, slot] == large)
                        )
                        if rows.size:
                            self._draw(
                                canvas, rows, rows + begin, slot, shape_id,
                                layout, colors,
                            )
            # Grey (per-pixel, not per-channel) noise: a third of the cost.
            noise = rng.standard_normal(canvas.shape[:3] + (1,), dtype=np.float32)
            canvas += _NOISE_STD * noise
            np.clip(canvas, 0.0, 255.0, out=canvas)
            images[begin:end] = np.rint(canvas, out=canvas).astype(np.uint8)
        return images

    def _draw(self, canvas, rows, idx, slot, shape_id, layout, colors):
        """Blends one shape into `canvas[rows]`, only inside its bounding box.

        Working on a (m, B, B) window around each shape instead of the whole
        image is several times faster.
        """
        size = self.image_size
        centers = layout["centers"][idx, slot]  # (m, 2)
        radii = layout["radii"][idx, slot]  # (m,)
        box = min(size, int(np.ceil(2.0 * radii.max())) + 3)
        offsets = np.arange(box)
        corner = np.clip(
            np.floor(centers - box / 2.0).astype(np.int64), 0, size - box
        )  # (m, 2) as (x0, y0)
        xs = corner[:, 0, None] + offsets  # (m, B)
        ys = corner[:, 1, None] + offsets  # (m, B)
        alpha = _coverage(shape_id, centers, radii, xs, ys)[..., None]  # (m,B,B,1)
        color = colors[idx, slot][:, None, None, :]  # (m, 1, 1, 3)
        index = (rows[:, None, None], ys[:, :, None], xs[:, None, :])
        patch = canvas[index]  # (m, B, B, 3)
        patch += alpha * (color - patch)
        canvas[index] = patch
