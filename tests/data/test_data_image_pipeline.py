"""image_text_dataset / load_eval_arrays: every source kind through fit, bad
records, determinism, caption draws, eval preprocessing, image modes."""

import io
import json
import os
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_clip.data import CaptionTokenizer
from keras_clip.data.bad_records import BadRecordError, BadRecordLogger, BadRecordReport
from keras_clip.data.image_pipeline import (
    decode_image,
    image_text_dataset,
    load_eval_arrays,
    random_resized_crop,
    validate_source,
)
from keras_clip.models.builder import build_clip

TINY = {
    "embed_dim": 16,
    "image_encoder": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
    "text_encoder": {"vocabulary_size": 20, "context_length": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
}
COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
NOUNS = ["circle", "square"]


def _image(seed, size=(24, 20)):
    """A smooth random RGB image (w, h) = size, as uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    return np.asarray(small.resize(size, Image.BICUBIC))


def _encode(array, fmt, mode=None):
    image = Image.fromarray(array)
    if mode == "P":
        image = image.convert("P", palette=Image.ADAPTIVE)
    elif mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# (file name, format, mode): grey, alpha, CMYK and palette variants.
GOOD = [
    ("im0.png", "PNG", None),
    ("im1.jpg", "JPEG", None),
    ("im2.bmp", "BMP", None),
    ("im3.gif", "GIF", "P"),
    ("im4.png", "PNG", "L"),
    ("im5.png", "PNG", "RGBA"),
    ("im6.jpg", "JPEG", "CMYK"),
    ("im7.png", "PNG", "LA"),
]


def _captions(i):
    return [f"a {COLORS[i]} {NOUNS[0]}", f"the {COLORS[i]} {NOUNS[1]}"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 images (2 captions each) as csv, tsv, jsonl, folder and 2 tar shards."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "images"
    folder.mkdir()
    rows = []
    shards = [[], []]
    for i, (name, fmt, mode) in enumerate(GOOD):
        encoded = _encode(_image(i, (20 + i, 28 - i)), fmt, mode)
        (folder / name).write_bytes(encoded)
        caps = _captions(i)
        (folder / (os.path.splitext(name)[0] + ".txt")).write_text("\n".join(caps) + "\n")
        rows += [(f"images/{name}", c, i) for c in caps]
        key = f"s{i:03d}"
        if i % 2:
            text = (f"{key}.json", json.dumps({"caption": caps}).encode())
        else:
            text = (f"{key}.txt", "\n".join(caps).encode())
        shards[i % 2] += [(f"{key}.{name.split('.')[1]}", encoded), text]
    # No labels in the sources that go through fit (one input structure, so
    # one compiled train step), labels in labelled.csv.
    with open(root / "train.csv", "w") as f:
        f.write("filepath,caption\n" + "".join(f"{p},{c}\n" for p, c, _ in rows))
    with open(root / "labelled.csv", "w") as f:
        f.write("filepath,caption,label\n" + "".join(f"{p},{c},{l}\n" for p, c, l in rows))
    with open(root / "train.tsv", "w") as f:
        f.write("filepath\tcaption\n" + "".join(f"{p}\t{c}\n" for p, c, _ in rows))
    with open(root / "train.jsonl", "w") as f:
        for p, c, _ in rows:
            f.write(json.dumps({"filepath": p, "caption": c}) + "\n")
    for index, members in enumerate(shards):
        with tarfile.open(root / f"shard-{index:02d}.tar", "w") as archive:
            for member, payload in members:
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
    return root


@pytest.fixture(scope="module")
def tokenizer():
    corpus = [" ".join(["a", "the"] + COLORS + NOUNS)]
    return CaptionTokenizer.from_corpus(corpus, context_length=8)


@pytest.fixture(scope="module")
def model(tokenizer):
    keras.utils.set_random_seed(0)
    model = build_clip(TINY, tokenizer=tokenizer)
    model.compile(optimizer="adam")
    return model


SOURCES = {
    "csv": "train.csv",
    "tsv": "train.tsv",
    "jsonl": "train.jsonl",
    "folder": "images",
    "tar": "shard-{00..01}.tar",
}


def test_fit_on_every_source_kind(data, tokenizer, model):
    # One test for all kinds: the conftest re-seeds TF before each test,
    # which makes the TF backend retrace the train step (seconds).
    valid = {tuple(tokenizer(c)) for i in range(8) for c in _captions(i)}
    for kind, path in SOURCES.items():
        report = BadRecordReport()
        dataset = image_text_dataset(
            str(data / path), model.tokenizer, model.image_shape, 4, report=report
        )
        spec = dataset.element_spec
        assert spec["images"].shape.as_list() == [4, 16, 16, 3], kind
        assert spec["images"].dtype == tf.float32
        assert spec["token_ids"].shape.as_list() == [4, 8]
        assert spec["token_ids"].dtype == tf.int32
        assert "labels" not in spec
        history = model.fit(dataset, steps_per_epoch=2, epochs=1, shuffle=False, verbose=0)
        assert np.isfinite(history.history["loss"][0]), kind
        assert report.total == 0, (kind, report.summary())
        batch = next(dataset.as_numpy_iterator())
        assert 0.0 <= batch["images"].min() and batch["images"].max() <= 255.0
        assert all(tuple(row) in valid for row in batch["token_ids"]), kind


def test_list_of_shards_and_eval_mode(data, tokenizer):
    shards = [str(data / "shard-00.tar"), str(data / "shard-01.tar")]
    dataset = image_text_dataset(shards, tokenizer, 16, 3, training=False)
    batches = list(dataset.as_numpy_iterator())
    assert [len(b["token_ids"]) for b in batches] == [3, 3, 2]  # no drop in eval
    # Eval: interleaved shard order, first caption of each image.
    order = [0, 1, 2, 3, 4, 5, 6, 7]
    expected = tokenizer([_captions(i)[0] for i in order])
    np.testing.assert_array_equal(np.concatenate([b["token_ids"] for b in batches]), expected)


def _first_batch(dataset):
    return next(iter(dataset.as_numpy_iterator()))


@pytest.mark.parametrize("kind", ["csv", "tar"])
def test_deterministic_under_seed(kind, data, tokenizer):
    def build(seed):
        return image_text_dataset(str(data / SOURCES[kind]), tokenizer, 16, 4, seed=seed)

    dataset = build(1)
    first, again = _first_batch(dataset), _first_batch(build(1))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    other = _first_batch(build(2))
    assert not np.array_equal(first["images"], other["images"])
    # Each epoch (iteration) is reshuffled and re-cropped.
    assert not np.array_equal(first["images"], _first_batch(dataset)["images"])


@pytest.mark.parametrize("kind", ["csv", "tar"])
def test_epoch_keyed_datasets(kind, data, tokenizer):
    """`epoch=E`: epoch E's batches every time, whatever was iterated before,
    and a different order / crops / caption draws for another epoch."""

    def epoch_batches(epoch, seed=1):
        dataset = image_text_dataset(str(data / SOURCES[kind]), tokenizer, 16, 4, seed=seed, epoch=epoch)
        return dataset, list(dataset.as_numpy_iterator())

    dataset, first = epoch_batches(2)
    again = list(dataset.as_numpy_iterator())  # a second pass of the same epoch
    _, rebuilt = epoch_batches(2)
    for other in (again, rebuilt):
        assert len(other) == len(first) == 2
        for a, b in zip(first, other):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    for different in (epoch_batches(3)[1], epoch_batches(2, seed=2)[1]):
        assert not np.array_equal(first[0]["images"], different[0]["images"])
    with pytest.raises(ValueError, match="seed=None"):
        image_text_dataset(str(data / SOURCES[kind]), tokenizer, 16, 4, seed=None, epoch=0)


def test_epoch_seed_is_a_pure_function():
    from keras_clip.data.image_pipeline import epoch_seed

    assert epoch_seed(0, 1) == epoch_seed(0, 1)
    seeds = {epoch_seed(s, e) for s in range(4) for e in range(50)}
    assert len(seeds) == 200  # no two (seed, epoch) pairs share a seed here
    with pytest.raises(ValueError, match="epoch=-1"):
        epoch_seed(0, -1)


def test_caption_draws_vary_across_epochs(data, tokenizer):
    dataset = image_text_dataset(str(data / "labelled.csv"), tokenizer, 16, 4, seed=3)
    assert dataset.element_spec["labels"].dtype == tf.int32
    valid = {i: {tuple(tokenizer(c)) for c in _captions(i)} for i in range(8)}
    drawn = {i: set() for i in range(8)}
    for _ in range(4):  # epochs
        for batch in dataset.as_numpy_iterator():
            for label, ids in zip(batch["labels"], batch["token_ids"]):
                assert tuple(ids) in valid[label]
                drawn[label].add(tuple(ids))
    # 8 images x 4 epochs: several images got both of their captions (the
    # same-seed reproducibility of draws is checked by the determinism test).
    assert sum(len(d) == 2 for d in drawn.values()) >= 3


# ---------------------------------------------------------------------- #
# Bad records
# ---------------------------------------------------------------------- #
def _bad_manifest(root, only=None):
    """A manifest of 4 good images plus one record of each bad kind."""
    good = root / "good.png"
    Image.fromarray(_image(0, (24, 20))).save(good)
    noise = np.random.default_rng(1).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    jpeg = _encode(noise, "JPEG")  # mostly entropy-coded data: cut it inside
    bad = {
        "missing_file": (b"missing.png", b"a red circle"),
        "empty_file": (b"empty.png", b"a red circle"),
        "corrupt_image": (b"corrupt.jpg", b"a red circle"),
        "truncated_image": (b"truncated.jpg", b"a red circle"),
        "too_large": (b"large.png", b"a red circle"),
        "empty_caption": (b"emptycap.png", b"   "),
        "non_utf8_caption": (b"latin.png", b"a r\xe9d circle"),
    }
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes(os.urandom(300))
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.fromarray(_image(2, (40, 40))).save(root / "large.png")  # 1600 px
    Image.fromarray(_image(3, (24, 20))).save(root / "emptycap.png")
    Image.fromarray(_image(4, (24, 20))).save(root / "latin.png")
    lines = [b"filepath,caption"]
    for i in range(4):
        Image.fromarray(_image(10 + i, (24, 20))).save(root / f"ok{i}.png")
        lines.append(b"ok%d.png,a %s circle" % (i, COLORS[i].encode()))
    for reason, (name, caption) in bad.items():
        if only in (None, reason):
            lines.append(name + b"," + caption)
    path = root / f"bad-{only or 'all'}.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path), {reason: name.decode() for reason, (name, _) in bad.items()}


def test_bad_records_counted_named_and_logged(tmp_path, tokenizer, model):
    manifest, names = _bad_manifest(tmp_path)
    report = BadRecordReport(log=False)
    dataset = image_text_dataset(manifest, tokenizer, 16, 4, report=report, max_pixels=1000)
    assert dataset.bad_records is report
    # Caption problems are found while reading the manifest.
    assert report.counts == {"empty_caption": 1, "non_utf8_caption": 1}
    printed = []
    logger = BadRecordLogger(report, print_fn=printed.append)
    history = model.fit(dataset, epochs=2, callbacks=[logger], shuffle=False, verbose=0)
    # Epoch 1: all 7; epoch 2: the 5 image problems, found again.
    assert history.history["bad_records"] == [7, 5]
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    # The run's totals count each bad record once, however many epochs saw it.
    assert report.count == 0 and report.total == 7
    totals = report.total_counts
    assert totals == {
        "empty_caption": 1, "non_utf8_caption": 1, "missing_file": 1, "empty_file": 1,
        "corrupt_image": 1, "truncated_image": 1, "too_large": 1,
    }
    for reason, name in names.items():
        assert any(name in entry for entry in report.total_names[reason]), reason
        assert f"{reason}: " in printed[0] and name in printed[0]
    assert report.to_dict()["total"] == 7
    # Evaluation arrays skip the same records.
    arrays = load_eval_arrays(manifest, 16, max_pixels=1000)
    assert arrays["images"].shape == (4, 16, 16, 3)
    assert sum(arrays["report"].counts.values()) == 7


@pytest.mark.parametrize(
    "reason",
    ["missing_file", "empty_file", "corrupt_image", "truncated_image", "too_large",
     "empty_caption", "non_utf8_caption"],
)
def test_strict_raises_naming_file_and_reason(reason, tmp_path, tokenizer):
    manifest, names = _bad_manifest(tmp_path, only=reason)
    with pytest.raises(BadRecordError, match=rf"{names[reason]}.*{reason}") as info:
        image_text_dataset(manifest, tokenizer, 16, 2, strict=True, max_pixels=1000)
    assert info.value.reason == reason and isinstance(info.value, ValueError)


def test_validate_source(tmp_path, data):
    manifest, names = _bad_manifest(tmp_path)
    report = validate_source(manifest, max_pixels=1000, report=BadRecordReport(log=False))
    assert report.count == 7 and set(report.counts) == set(names)
    # Rows are read (and checked) before images are decoded.
    with pytest.raises(BadRecordError, match=r"emptycap\.png.*empty_caption"):
        validate_source(manifest, max_pixels=1000, strict=True)
    assert validate_source(str(data / "shard-{00..01}.tar")).total == 0


def test_bad_records_in_tar_shards(tmp_path, tokenizer):
    good = [_encode(_image(i), "PNG") for i in range(4)]
    members = []
    for i, payload in enumerate(good):
        members += [(f"g{i}.png", payload), (f"g{i}.txt", b"a red circle")]
    members += [
        ("t.jpg", _encode(_image(9), "JPEG")[:200]), ("t.txt", b"a red circle"),
        ("z.png", b""), ("z.txt", b"a red circle"),
        ("n.png", good[0]),  # no caption
    ]
    with tarfile.open(tmp_path / "d-0.tar", "w") as archive:
        for member, payload in members:
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    pattern = str(tmp_path / "d-{0..1}.tar")  # d-1.tar is missing
    report = BadRecordReport(log=False)
    dataset = image_text_dataset(pattern, tokenizer, 16, 2, report=report)
    assert len(list(dataset.as_numpy_iterator())) == 2
    assert report.counts == {
        "truncated_image": 1, "empty_file": 1, "missing_caption": 1, "missing_file": 1,
    }
    assert "d-0.tar:t.jpg" in report.names["truncated_image"][0]
    assert report.names["missing_file"] == [str(tmp_path / "d-1.tar")]
    # Strict: the first bad record met while streaming stops the iteration.
    dataset = image_text_dataset(str(tmp_path / "d-0.tar"), tokenizer, 16, 2, strict=True, training=False)
    with pytest.raises(tf.errors.OpError, match=r"d-0\.tar:t\.jpg.*truncated_image"):
        list(dataset.as_numpy_iterator())


# ---------------------------------------------------------------------- #
# Decoding and preprocessing
# ---------------------------------------------------------------------- #
def test_decode_modes_match_pil():
    array = _image(5, (30, 20))
    for fmt, mode in [("PNG", "L"), ("PNG", "RGBA"), ("PNG", "LA"), ("JPEG", "CMYK"),
                      ("GIF", "P"), ("BMP", None), ("JPEG", "L"), ("PNG", "P")]:
        data = _encode(array, fmt, mode)
        pixels, reason, _ = decode_image(data)
        assert reason is None, (fmt, mode, reason)
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA").convert("RGB"))
        assert pixels.shape == (20, 30, 3) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, expected, err_msg=f"{fmt} {mode}")
    # 16-bit grey PNG -> 8 bit.
    grey16 = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(grey16).save(buffer, "PNG")
    pixels, reason, _ = decode_image(buffer.getvalue())
    assert reason is None
    np.testing.assert_allclose(pixels[..., 0], grey16 / 257.0, atol=0.51)
    # Animated GIF: the first frame.
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    pixels, _, _ = decode_image(buffer.getvalue())
    assert abs(int(pixels.mean()) - 10) <= 2


def _reference_eval(array, size):
    """open_clip eval: Resize(size, bicubic) on the shorter side + CenterCrop."""
    h, w = array.shape[:2]
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_h, new_w = size, int(size * w / h)
    resized = np.asarray(Image.fromarray(array).resize((new_w, new_h), Image.BICUBIC))
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return resized[top : top + size, left : left + size]


def test_eval_preprocessing_matches_pil_reference(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(48, 64), (64, 48), (37, 23), (23, 37), (120, 90), (16, 16), (12, 10)]
    arrays = []
    lines = ["filepath,caption"]
    for i, (h, w) in enumerate(sizes):
        array = np.clip(
            _image(i, (w, h)).astype(int) + rng.integers(-30, 30, (h, w, 3)), 0, 255
        ).astype(np.uint8)
        Image.fromarray(array).save(tmp_path / f"e{i}.png")
        arrays.append(array)
        lines += [f"e{i}.png,caption {i} a", f"e{i}.png,caption {i} b"]
    (tmp_path / "eval.csv").write_text("\n".join(lines) + "\n")
    result = load_eval_arrays(str(tmp_path / "eval.csv"), (16, 16, 3))
    assert result["images"].dtype == np.uint8
    assert result["images"].shape == (len(sizes), 16, 16, 3)
    assert result["labels"] is None
    assert result["captions"][:3] == ["caption 0 a", "caption 0 b", "caption 1 a"]
    np.testing.assert_array_equal(result["text_to_image"], np.repeat(np.arange(len(sizes)), 2))
    for got, array in zip(result["images"], arrays):
        difference = np.abs(got.astype(int) - _reference_eval(array, 16).astype(int))
        assert difference.max() <= 6 and difference.mean() <= 1.0, (array.shape, difference.max())
    assert load_eval_arrays(str(tmp_path / "eval.csv"), 16, max_examples=3)["images"].shape[0] == 3


def test_random_resized_crop():
    image = tf.constant(np.full((30, 50, 3), 77, np.uint8))
    crop = random_resized_crop(image, 16, tf.constant([1, 2], tf.int64))
    assert crop.shape == (16, 16, 3) and np.all(crop.numpy() == 77.0)
    # A gradient image: a crop of >= 90% of the area keeps most of its range.
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32)[None, :, None], (48, 1, 3))
    a = random_resized_crop(tf.constant(ramp), (8, 12), tf.constant([1, 2], tf.int64)).numpy()
    b = random_resized_crop(tf.constant(ramp), (8, 12), tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8, 12, 3) and a[:, 0].max() < 30 and a[:, -1].min() > 225
    # A very wide image falls back to a central crop at ratio 4/3.
    wide = tf.constant(np.zeros((4, 200, 3), np.uint8))
    assert random_resized_crop(wide, 8, tf.constant([0, 0], tf.int64)).shape == (8, 8, 3)


def test_argument_errors(data, tokenizer):
    with pytest.raises(ValueError, match="at least 2"):
        image_text_dataset(str(data / "train.csv"), tokenizer, 16, 1)
    with pytest.raises(ValueError, match="image_size"):
        image_text_dataset(str(data / "train.csv"), tokenizer, (16, 16, 4), 4)
    with pytest.raises(ValueError, match="batch_size=16 is larger than the number of images"):
        image_text_dataset(str(data / "train.csv"), tokenizer, 16, 16)
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        image_text_dataset(str(data / "nothing.csv"), tokenizer, 16, 4)
    with pytest.raises(ValueError, match=r"no 'caption' column.*'filepath', 'text'"):
        (data / "nocap.csv").write_text("filepath,text\nimages/im0.png,x\n")
        image_text_dataset(str(data / "nocap.csv"), tokenizer, 16, 4)
