"""make_dataset: batching, dtypes, determinism, errors, feeding fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_clip.data import CaptionTokenizer, ShapesDataset, make_dataset

WORDS = ["red", "green", "blue", "circle", "square", "small", "large", "a"]


def _toy(n=10, size=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    # Each image carries its index in pixel [0, 0, 0] so order can be checked.
    images[:, 0, 0, 0] = np.arange(n)
    captions = [
        f"a {WORDS[i % 3]} {WORDS[3 + i % 2]} {'big' if i % 4 else ''}"
        for i in range(n)
    ]
    labels = np.arange(n, dtype=np.int64) % 3
    return images, captions, labels


@pytest.fixture(scope="module")
def tokenizer():
    return CaptionTokenizer(WORDS, context_length=6)


def _order(dataset):
    return np.concatenate(
        [batch["images"][:, 0, 0, 0] for batch in dataset.as_numpy_iterator()]
    ).astype(int)


def test_batches_dtypes_and_values(tokenizer):
    images, captions, labels = _toy()
    ds = make_dataset(images, captions, tokenizer, batch_size=4, shuffle=False)
    spec = ds.element_spec
    assert set(spec) == {"images", "token_ids"}
    assert spec["images"].dtype == tf.float32
    assert spec["token_ids"].dtype == tf.int32
    assert spec["images"].shape.as_list() == [4, 8, 8, 3]
    assert spec["token_ids"].shape.as_list() == [4, 6]
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 2  # 10 // 4, remainder dropped
    # Exact pixels, in [0, 255] (not rescaled: the model normalises itself).
    np.testing.assert_array_equal(batches[0]["images"], images[:4].astype(np.float32))
    np.testing.assert_array_equal(batches[1]["images"], images[4:8].astype(np.float32))
    np.testing.assert_array_equal(batches[0]["token_ids"], tokenizer(captions[:4]))
    np.testing.assert_array_equal(batches[1]["token_ids"], tokenizer(captions[4:8]))


def test_labels_and_remainder(tokenizer):
    images, captions, labels = _toy()
    ds = make_dataset(
        images, captions, tokenizer, batch_size=4, labels=labels,
        shuffle=False, drop_remainder=False,
    )
    assert ds.element_spec["labels"].dtype == tf.int32
    batches = list(ds.as_numpy_iterator())
    assert [len(b["labels"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(
        np.concatenate([b["labels"] for b in batches]), labels
    )


def test_shuffle_is_deterministic_permutation(tokenizer):
    images, captions, _ = _toy(n=32)
    make = lambda seed: make_dataset(  # noqa: E731
        images, captions, tokenizer, batch_size=8, seed=seed
    )
    first = _order(make(0))
    np.testing.assert_array_equal(first, _order(make(0)))
    assert sorted(first.tolist()) == list(range(32))
    assert not np.array_equal(first, np.arange(32))
    assert not np.array_equal(first, _order(make(1)))
    # Captions stay paired with their images after shuffling.
    for batch in make(0).as_numpy_iterator():
        index = batch["images"][:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(
            batch["token_ids"], tokenizer([captions[i] for i in index])
        )


def test_repeat(tokenizer):
    images, captions, _ = _toy(n=6)
    ds = make_dataset(images, captions, tokenizer, batch_size=4, repeat=True)
    batches = list(ds.take(5).as_numpy_iterator())
    assert len(batches) == 5
    # Repeating allows a batch larger than the data set.
    ds = make_dataset(images, captions, tokenizer, batch_size=8, repeat=True)
    assert next(iter(ds))["images"].shape[0] == 8


def test_float_images_and_numpy_captions(tokenizer):
    images, captions, _ = _toy()
    ds = make_dataset(
        images.astype(np.float64), np.array(captions), tokenizer, batch_size=5,
        shuffle=False,
    )
    batch = next(iter(ds))
    assert batch["images"].dtype == tf.float32
    np.testing.assert_array_equal(batch["token_ids"].numpy(), tokenizer(captions[:5]))


def test_errors(tokenizer):
    images, captions, labels = _toy(n=8)
    with pytest.raises(ValueError, match="images has 8 examples but captions has 6"):
        make_dataset(images, captions[:6], tokenizer, batch_size=2)
    with pytest.raises(ValueError, match="captions is empty"):
        make_dataset(images[:0], [], tokenizer, batch_size=2)
    with pytest.raises(ValueError, match=r"\(N, height, width, 3\).*\(8, 8, 8\)"):
        make_dataset(images[..., 0], captions, tokenizer, batch_size=2)
    with pytest.raises(ValueError, match=r"received shape \(8, 8, 8, 1\)"):
        make_dataset(images[..., :1], captions, tokenizer, batch_size=2)
    with pytest.raises(
        ValueError,
        match="a contrastive batch needs at least 2 pairs: received batch_size=1",
    ):
        make_dataset(images, captions, tokenizer, batch_size=1)
    with pytest.raises(ValueError, match="batch_size=16.*drop_remainder=False"):
        make_dataset(images, captions, tokenizer, batch_size=16)
    with pytest.raises(ValueError, match=r"labels must have shape \(8,\)"):
        make_dataset(images, captions, tokenizer, batch_size=2, labels=labels[:3])
    with pytest.raises(TypeError, match=r"captions\[2\]"):
        make_dataset(images, captions[:2] + [5] + captions[3:], tokenizer, batch_size=2)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        make_dataset(images, captions, tokenizer, batch_size=2.0)
    # batch_size > N is fine without drop_remainder.
    ds = make_dataset(images, captions, tokenizer, batch_size=16, drop_remainder=False)
    assert next(iter(ds))["images"].shape[0] == 8


class TinyDualModel(keras.Model):
    """Smallest model that consumes the pipeline's dict and has a loss."""

    def __init__(self, vocabulary_size):
        super().__init__()
        self.image_proj = keras.layers.Dense(4)
        self.embedding = keras.layers.Embedding(vocabulary_size, 4)

    def call(self, inputs):
        pooled = keras.ops.mean(inputs["images"], axis=(1, 2)) / 255.0  # (B, 3)
        image = self.image_proj(pooled)  # (B, 4)
        text = keras.ops.mean(self.embedding(inputs["token_ids"]), axis=1)  # (B, 4)
        return keras.ops.matmul(image, keras.ops.transpose(text))  # (B, B)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        labels = keras.ops.arange(keras.ops.shape(y_pred)[0])
        return keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(
                labels, y_pred, from_logits=True
            )
        )


def test_feeds_model_fit_with_shapes_data():
    data = ShapesDataset(image_size=16, seed=0).generate("train", 32)
    tokenizer = CaptionTokenizer.from_corpus(data["captions"], context_length=12)
    ds = make_dataset(
        data["images"], data["captions"], tokenizer, batch_size=8,
        labels=np.maximum(data["labels"], 0),
    )
    model = TinyDualModel(tokenizer.vocabulary_size)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    # shuffle=False: the data set is already shuffled (avoids a Keras warning).
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_image_views_are_augmented_copies_in_range():
    import numpy as np

    from keras_clip.data import CaptionTokenizer, make_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 16, 16, 3)).astype("uint8")
    captions = [f"caption {i}" for i in range(8)]
    tokenizer = CaptionTokenizer.from_corpus(captions, context_length=6)
    first = next(iter(make_dataset(images, captions, tokenizer, 4, seed=1, image_views=True)))
    again = next(iter(make_dataset(images, captions, tokenizer, 4, seed=1, image_views=True)))
    views = first["image_views"].numpy()
    assert views.shape == (4, 16, 16, 3) and views.dtype == np.float32
    assert views.min() >= 0.0 and views.max() <= 255.0
    assert not np.allclose(views, first["images"].numpy())
    np.testing.assert_array_equal(views, again["image_views"].numpy())


def test_for_one_epoch_keeps_batches_and_attributes_without_the_autotune_model():
    # An epoch's dataset, which `fit` drops unexhausted after its known
    # number of batches: the same batches, the attributes the training
    # loop reads, and no autotuning model (deleting an iterator that had
    # one waited 2.5-4.4 s for its thread in about one epoch of three).
    from keras_clip.data.pipeline import for_one_epoch, pretokenized_dataset

    images = np.arange(6 * 4 * 4 * 3, dtype="uint8").reshape(6, 4, 4, 3)
    ids = np.arange(6 * 5, dtype="int32").reshape(6, 5)
    dataset = pretokenized_dataset(images, ids, 2, labels=np.arange(6))
    dataset.bad_records = report = object()
    epoch = for_one_epoch(dataset)
    assert epoch.bad_records is report
    assert epoch.options().autotune.enabled is False
    assert dataset.options().autotune.enabled is not False
    got, want = list(epoch.as_numpy_iterator()), list(dataset.as_numpy_iterator())
    assert len(got) == len(want) == 3
    for a, b in zip(got, want):
        for key in ("images", "token_ids", "labels"):
            np.testing.assert_array_equal(a[key], b[key])
    batches = [{"x": np.zeros(2)}]
    assert for_one_epoch(batches) is batches
