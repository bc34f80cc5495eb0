"""ShapesDataset: determinism, splits, held-out classes, truthful captions."""

import re
import time

import numpy as np
import pytest

from keras_clip.data import ShapesDataset
from keras_clip.data.shapes import (
    COLOR_NAMES,
    COLORS,
    DEFAULT_HELD_OUT,
    SHAPE_NAMES,
    shape_mask,
)

# Every word a caption or prompt may use.
ALLOWED_WORDS = set(COLOR_NAMES) | set(SHAPE_NAMES) | {
    "a", "an", "and", "small", "large", "picture", "image", "of", "on",
    "dark", "background", "in", "the", "at", "top", "bottom", "left",
    "right", "center", "to", "above", "below",
}


@pytest.fixture(scope="module")
def data32():
    return ShapesDataset(image_size=32, seed=3)


@pytest.fixture(scope="module")
def train32(data32):
    return data32.generate("train", 600)


def _shape_pixels(image):
    """Pixels at least half covered by a shape (background is dark, <= ~50).

    Threshold half-way between the background (the median: most pixels) and
    the shape's brightest channel value.
    """
    value = image.max(axis=-1).astype(np.float32)
    return value > (np.median(value) + value.max()) / 2.0


def _nearest_color(rgb):
    names = list(COLORS)
    palette = np.asarray([COLORS[n] for n in names], np.float32)
    return names[int(np.argmin(np.linalg.norm(palette - rgb, axis=1)))]


def test_class_names_and_held_out():
    data = ShapesDataset()
    assert len(COLOR_NAMES) >= 6 and len(SHAPE_NAMES) >= 5
    assert data.class_names[0] == "red circle"
    assert len(data.class_names) == len(COLOR_NAMES) * len(SHAPE_NAMES)
    assert data.held_out_names == list(
        sorted(DEFAULT_HELD_OUT, key=data.class_names.index)
    )
    assert sorted(data.held_out_classes + data.seen_classes) == list(
        range(data.num_classes)
    )
    # Every colour and every shape still has a seen combination.
    seen = [data.class_color_shape(i) for i in data.seen_classes]
    assert {c for c, _ in seen} == set(COLOR_NAMES)
    assert {s for _, s in seen} == set(SHAPE_NAMES)
    for i in range(data.num_classes):
        assert " ".join(data.class_color_shape(i)) == data.class_names[i]


def test_outputs_shapes_and_dtypes(train32):
    n = 600
    assert train32["images"].shape == (n, 32, 32, 3)
    assert train32["images"].dtype == np.uint8
    assert isinstance(train32["captions"], list) and len(train32["captions"]) == n
    assert all(isinstance(c, str) and c for c in train32["captions"])
    assert train32["labels"].shape == (n,) and train32["labels"].dtype == np.int32
    assert train32["two_shapes"].shape == (n,) and train32["two_shapes"].dtype == bool


def test_determinism():
    a = ShapesDataset(image_size=32, seed=7).generate("train", 50)
    b = ShapesDataset(image_size=32, seed=7).generate("train", 50)
    np.testing.assert_array_equal(a["images"], b["images"])
    assert a["captions"] == b["captions"]
    np.testing.assert_array_equal(a["labels"], b["labels"])
    c = ShapesDataset(image_size=32, seed=8).generate("train", 50)
    assert not np.array_equal(a["images"], c["images"])


def test_train_split(data32, train32):
    held = set(data32.held_out_classes)
    class_ids = train32["class_ids"]
    two = train32["two_shapes"]
    # Held-out combinations never appear, in either slot.
    assert not held & set(class_ids[:, 0].tolist())
    assert not held & set(class_ids[two, 1].tolist())
    assert np.all(class_ids[~two, 1] == -1)
    # Labels: the class for single-shape images, -1 for two shapes.
    np.testing.assert_array_equal(train32["labels"][two], -1)
    np.testing.assert_array_equal(train32["labels"][~two], class_ids[~two, 0])
    assert 0.2 < two.mean() < 0.4  # two_shape_fraction=0.3
    # The two shapes of an image are different combinations.
    assert np.all(class_ids[two, 0] != class_ids[two, 1])
    for name in data32.held_out_names:
        assert not any(name in c for c in train32["captions"])


def test_every_colour_and_shape_in_train(train32):
    text = " ".join(train32["captions"])
    for word in COLOR_NAMES + SHAPE_NAMES:
        assert re.search(rf"\b{word}\b", text), word
    assert set(train32["color_ids"][:, 0].tolist()) == set(range(len(COLOR_NAMES)))
    assert set(train32["shape_ids"][:, 0].tolist()) == set(range(len(SHAPE_NAMES)))


def test_test_and_heldout_splits(data32):
    test = data32.generate("test", 200)
    held = data32.generate("heldout", 100)
    assert not test["two_shapes"].any() and not held["two_shapes"].any()
    assert set(test["labels"].tolist()) <= set(data32.seen_classes)
    assert set(held["labels"].tolist()) == set(data32.held_out_classes)
    for caption, label in zip(held["captions"], held["labels"]):
        assert data32.class_names[label] in caption


def test_splits_disjoint_in_pixels(data32, train32):
    test = data32.generate("test", 300)
    held = data32.generate("heldout", 100)
    hashes = [
        {image.tobytes() for image in split["images"]}
        for split in (train32, test, held)
    ]
    assert not hashes[0] & hashes[1]
    assert not hashes[0] & hashes[2]
    assert not hashes[1] & hashes[2]
    # Independent random streams: the layouts differ too.
    assert not np.allclose(train32["centers"][:50, 0], test["centers"][:50, 0])


@pytest.mark.parametrize("image_size", [32, 64])
def test_single_shape_captions_truthful(image_size):
    data = ShapesDataset(image_size=image_size, seed=1)
    out = data.generate("test", 150)
    for i in range(150):
        caption = out["captions"][i]
        color, shape = data.class_color_shape(out["labels"][i])
        assert f"{color} {shape}" in caption
        # Colour: the shape's pixels have the named colour.
        pixels = _shape_pixels(out["images"][i])
        assert pixels.sum() >= 8
        rgb = np.median(out["images"][i][pixels].astype(np.float32), axis=0)
        assert _nearest_color(rgb) == color, (caption, rgb)
        # Shape: the drawn pixels match the named shape best.
        ious = {}
        for candidate in SHAPE_NAMES:
            mask = shape_mask(
                candidate, out["centers"][i, 0], out["radii"][i, 0], image_size
            )
            ious[candidate] = (mask & pixels).sum() / (mask | pixels).sum()
        assert max(ious, key=ious.get) == shape, (caption, ious)
        assert ious[shape] > (0.7 if image_size < 64 else 0.8), (caption, ious)


def test_size_and_position_words_truthful():
    data = ShapesDataset(image_size=64, seed=2)
    out = data.generate("test", 400)
    size = 64
    for i in range(400):
        caption = out["captions"][i]
        radius = out["radii"][i, 0] / size
        if "small" in caption.split():
            assert radius <= 0.16
        if "large" in caption.split():
            assert radius >= 0.21
        x, y = out["centers"][i, 0] / size
        words = caption.split()
        if "left" in words:
            assert x < 0.4
        if "right" in words:
            assert x > 0.6
        if "top" in words:
            assert y < 0.4
        if "bottom" in words:
            assert y > 0.6
        if "center" in words:
            assert abs(x - 0.5) < 0.07 and abs(y - 0.5) < 0.07


def test_two_shape_relations_truthful(data32, train32):
    relation = re.compile(
        r"a (?:small |large )?(\w+ \w+) (to the left of|to the right of|above|below)"
        r" an? (?:small |large )?(\w+ \w+)"
    )
    checked = 0
    for i in np.flatnonzero(train32["two_shapes"]):
        caption = train32["captions"][i]
        names = [data32.class_names[c] for c in train32["class_ids"][i]]
        for name in names:
            assert name in caption
        match = relation.search(caption)
        if not match:
            continue
        first, rel, second = match.groups()
        a, b = names.index(first), names.index(second)
        (xa, ya), (xb, yb) = train32["centers"][i, a], train32["centers"][i, b]
        expected = {
            "to the left of": xa < xb,
            "to the right of": xa > xb,
            "above": ya < yb,
            "below": ya > yb,
        }[rel]
        assert expected, caption
        checked += 1
    assert checked > 20


def test_captions_use_known_words_and_articles(train32):
    for caption in train32["captions"]:
        words = caption.split()
        assert set(words) <= ALLOWED_WORDS, caption
        for article, word in zip(words, words[1:]):
            if article == "a":
                assert word[0] not in "aeiou", caption
    assert len(set(train32["captions"])) > 100  # varied templates


def test_zero_shot_prompts(data32):
    prompts = data32.zero_shot_prompts()
    assert len(prompts) == data32.num_classes
    assert all(len(p) == len(data32.prompt_templates) for p in prompts)
    assert prompts[0][0] == "a red circle."
    orange = data32.zero_shot_prompts(["orange ring"])[0]
    assert orange[0] == "an orange ring."
    for prompt in sum(prompts, []):
        assert set(prompt.rstrip(".").split()) <= ALLOWED_WORDS


def test_errors():
    data = ShapesDataset(image_size=32)
    with pytest.raises(ValueError, match="valid splits.*train.*test.*heldout"):
        data.generate("validation", 10)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="num_examples"):
            data.generate("train", bad)
    with pytest.raises(ValueError, match="pink circle.*Valid names.*red circle"):
        ShapesDataset(held_out=["pink circle"])
    with pytest.raises(ValueError, match="image_size"):
        ShapesDataset(image_size=8)
    with pytest.raises(ValueError, match="two_shape_fraction"):
        ShapesDataset(two_shape_fraction=1.5)
    with pytest.raises(ValueError, match="heldout"):
        ShapesDataset(held_out=()).generate("heldout", 4)


def test_custom_held_out_and_all_two_shapes():
    data = ShapesDataset(image_size=32, held_out=["orange ring"], two_shape_fraction=1.0)
    assert data.held_out_names == ["orange ring"]
    out = data.generate("train", 64)
    assert out["two_shapes"].all()
    np.testing.assert_array_equal(out["labels"], -1)


def test_generation_is_fast():
    start = time.perf_counter()
    out = ShapesDataset(image_size=64).generate("train", 2000)
    assert out["images"].shape == (2000, 64, 64, 3)
    assert time.perf_counter() - start < 5.0


def test_training_epochs_tokenize_once_and_match_the_tokenizing_pipeline():
    """A training epoch of the shapes source uses caption ids tokenized once
    for the run; its batches equal `make_dataset`'s, which tokenizes each
    batch inside tf.data, in the epoch's (seed, epoch) order."""
    from keras_clip.data.pipeline import make_dataset
    from keras_clip.data.sources.shapes import ShapesSource
    from keras_clip.tokenizers import CaptionTokenizer

    source = ShapesSource("train", num_examples=300, image_size=32)
    tokenizer = CaptionTokenizer.from_corpus(source.captions(), context_length=16)
    for epoch in (0, 2):
        new = list(source.dataset(tokenizer, (32, 32, 3), 64, training=True, seed=3, epoch=epoch).as_numpy_iterator())
        data, order = source.data, np.random.default_rng([3, epoch]).permutation(300)
        old = list(make_dataset(
            data["images"][order], [data["captions"][i] for i in order], tokenizer, 64,
            labels=data["labels"][order], shuffle=False,
        ).as_numpy_iterator())
        assert len(new) == len(old) == 300 // 64
        for a, b in zip(new, old):
            assert sorted(a) == sorted(b) == ["images", "labels", "token_ids"]
            for key in a:
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    cached = source._token_ids[1]
    list(source.dataset(tokenizer, (32, 32, 3), 64, training=True, seed=3, epoch=5).take(1))
    assert source._token_ids[1] is cached  # not tokenized again for a later epoch
