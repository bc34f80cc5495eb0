"""The DataSource interface on every kind, the registry, the shapes kind
against the shapes recipe's own stream, and truncated tar shards."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from keras_clip.data import CaptionTokenizer, ShapesDataset, make_dataset
from keras_clip.data.bad_records import BadRecordError, BadRecordReport
from keras_clip.data.shapes import PROMPT_TEMPLATES
from keras_clip.data.sources import (
    DataSource,
    ManifestSource,
    ShapesSource,
    get_source_class,
    open_source,
    register_source,
    source_kinds,
)


def _png_bytes(seed=0, size=8):
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _write_tar(path, members):
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


SHAPES = {"kind": "shapes", "split": "train", "num_examples": 40, "image_size": 16, "seed": 1}


@pytest.fixture(scope="module")
def shapes_source():
    return open_source(SHAPES)


@pytest.fixture(scope="module")
def tokenizer(shapes_source):
    return CaptionTokenizer.from_corpus(shapes_source.captions(), context_length=12)


# ---------------------------------------------------------------------- #
# Registry and open_source
# ---------------------------------------------------------------------- #
def test_builtin_kinds_and_detection(tmp_path):
    assert source_kinds()[:4] == ["manifest", "folder", "shards", "shapes"]
    Image.open(io.BytesIO(_png_bytes())).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a cat\n")
    (tmp_path / "m.csv").write_text("filepath,caption\na.png,a cat\n")
    _write_tar(tmp_path / "s.tar", [("k.png", _png_bytes()), ("k.txt", b"a cat")])
    for spec, kind in [
        (str(tmp_path / "m.csv"), "manifest"),
        (str(tmp_path), "folder"),
        (str(tmp_path / "s.tar"), "shards"),
        ([str(tmp_path / "s.tar")], "shards"),
        ({"kind": "manifest", "path": str(tmp_path / "m.csv")}, "manifest"),
        ({"kind": "shards", "path": str(tmp_path / "s.tar"), "labels": False}, "shards"),
        (SHAPES, "shapes"),
    ]:
        source = open_source(spec)
        assert isinstance(source, DataSource) and source.kind == kind, spec
        assert type(source) is get_source_class(kind)
        assert open_source(source) is source
    assert open_source(str(tmp_path / "m.csv")).num_records == 1
    shards = open_source(str(tmp_path / "s.tar"))
    assert shards.num_records is None  # unknown before reading
    assert shards.captions() == ["a cat"] and shards.num_records == 1
    assert open_source(str(tmp_path)).class_names is None


def test_open_source_errors():
    with pytest.raises(ValueError, match=r"Unknown source kind 'coco'.*'manifest'"):
        open_source({"kind": "coco", "path": "x.json"})
    with pytest.raises(ValueError, match="needs a 'kind' key"):
        open_source({"split": "train"})
    with pytest.raises(TypeError, match=r"Unknown option\(s\) \['colour'\] for a shapes source"):
        open_source({**SHAPES, "colour": 3})
    with pytest.raises(TypeError, match="received 3 of type int"):
        open_source(3)
    with pytest.raises(TypeError, match="DataSource subclass"):
        register_source("thing", dict)
    with pytest.raises(ValueError, match="already registered to ManifestSource"):
        register_source("manifest", type("Other", (DataSource,), {}))
    # Re-registering the same class (a re-imported module) is allowed.
    assert register_source("manifest", ManifestSource, detect=None) is ManifestSource
    from keras_clip.data.sources import manifest

    register_source("manifest", ManifestSource, detect=manifest._detect)


# ---------------------------------------------------------------------- #
# The shapes kind
# ---------------------------------------------------------------------- #
def test_shapes_source_matches_shapes_dataset(shapes_source):
    shapes = ShapesDataset(image_size=16, seed=1)
    train = shapes.generate("train", 40)
    assert shapes_source.has_labels and shapes_source.num_records == 40
    assert shapes_source.class_names == shapes.class_names
    assert shapes_source.templates == list(PROMPT_TEMPLATES)
    # The vocabulary corpus, in the shapes recipe's order.
    assert shapes_source.captions() == train["captions"] + [
        t.format(c) for c in shapes.class_names for t in shapes.prompt_templates
    ]
    for split in ("test", "heldout"):
        source = open_source({"kind": "shapes", "split": split, "num_examples": 12, "image_size": 16, "seed": 1})
        arrays = source.eval_arrays((16, 16, 3))
        expected = shapes.generate(split, 12)
        np.testing.assert_array_equal(arrays["images"], expected["images"])
        np.testing.assert_array_equal(arrays["labels"], expected["labels"])
        assert arrays["captions"] == expected["captions"]
        np.testing.assert_array_equal(arrays["text_to_image"], np.arange(12))
        assert arrays["report"].total == 0
        assert len(source.eval_arrays(16, max_examples=5)["captions"]) == 5
    with pytest.raises(ValueError, match=r"makes 16x16 images but image_shape is \(32, 32, 3\)"):
        shapes_source.eval_arrays((32, 32, 3))
    with pytest.raises(ValueError, match="Unknown shapes split"):
        ShapesSource(split="val")


@pytest.mark.parametrize("image_views", [False, True])
def test_shapes_training_stream_is_the_recipe_stream(shapes_source, tokenizer, image_views):
    """Bit-identical to the shapes recipe's per-epoch stream: a NumPy
    permutation keyed by (seed, epoch), then make_dataset unshuffled."""
    train = ShapesDataset(image_size=16, seed=1).generate("train", 40)
    seed = 7
    for epoch in (0, 3):
        order = np.random.default_rng([seed, epoch]).permutation(40)
        expected = make_dataset(
            train["images"][order], [train["captions"][i] for i in order], tokenizer, 8,
            labels=train["labels"][order], shuffle=False, seed=seed * 100_003 + epoch,
            image_views=image_views,
        )
        got = shapes_source.dataset(
            tokenizer, (16, 16, 3), 8, training=True, seed=seed, epoch=epoch, image_views=image_views
        )
        assert got.element_spec.keys() == expected.element_spec.keys()
        pairs = list(zip(got.as_numpy_iterator(), expected.as_numpy_iterator()))
        assert len(pairs) == 5
        for a, b in pairs:
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    evaluation = list(shapes_source.dataset(tokenizer, 16, 16, training=False, seed=0).as_numpy_iterator())
    assert [len(b["labels"]) for b in evaluation] == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate([b["labels"] for b in evaluation]), train["labels"])


def test_file_source_image_views(tmp_path, tokenizer):
    _write_tar(tmp_path / "s.tar", [m for i in range(4) for m in ((f"k{i}.png", _png_bytes(i)), (f"k{i}.txt", b"a"))])
    batch = next(open_source(str(tmp_path / "s.tar")).dataset(
        tokenizer, 8, 2, training=True, seed=0, epoch=0, image_views=True
    ).as_numpy_iterator())
    assert batch["image_views"].shape == (2, 8, 8, 3)
    assert not np.array_equal(batch["image_views"], batch["images"])


# ---------------------------------------------------------------------- #
# Truncated tar shards
# ---------------------------------------------------------------------- #
def _shard_bytes(tmp_path, count=4):
    members = []
    for i in range(count):
        members += [(f"k{i}.png", _png_bytes(i, size=20)), (f"k{i}.txt", b"a caption %d" % i)]
    _write_tar(tmp_path / "full.tar", members)
    data = (tmp_path / "full.tar").read_bytes()
    # Member offsets, to cut between members or inside a header.
    with tarfile.open(tmp_path / "full.tar") as archive:
        offsets = [member.offset for member in archive.getmembers()]
    return data, offsets


def test_complete_shard_has_no_bad_records(tmp_path):
    _shard_bytes(tmp_path)
    report = BadRecordReport(log=False)
    samples = list(open_source(str(tmp_path / "full.tar")).iter_samples(report=report))
    assert len(samples) == 4 and report.total == 0
    # Compressed shards are checked on their decompressed tar stream.
    with open(tmp_path / "full.tar", "rb") as raw, tarfile.open(tmp_path / "full.tar.gz", "w:gz") as gz:
        with tarfile.open(fileobj=raw) as archive:
            for member in archive:
                gz.addfile(member, archive.extractfile(member))
    samples = list(open_source(str(tmp_path / "full.tar.gz")).iter_samples(report=report))
    assert len(samples) == 4 and report.total == 0


@pytest.mark.parametrize("cut", ["between_members", "inside_header"])
def test_truncated_shard_is_a_corrupt_shard(tmp_path, cut):
    data, offsets = _shard_bytes(tmp_path)
    # The header of k3.png starts at offsets[6]: samples k0..k2 are complete.
    end = offsets[6] if cut == "between_members" else offsets[6] + 100
    assert (end % 512 == 0) == (cut == "between_members")
    (tmp_path / "cut.tar").write_bytes(data[:end])
    source = open_source(str(tmp_path / "cut.tar"))
    report = BadRecordReport(log=False)
    samples = list(source.iter_samples(report=report))
    assert [s.captions for s in samples] == [("a caption 0",), ("a caption 1",)]
    assert report.counts == {"corrupt_shard": 1}
    name = report.names["corrupt_shard"][0]
    assert "cut.tar" in name and "2 sample(s) read" in name
    reason = "ends inside a 512-byte block" if cut == "inside_header" else "without tar's end-of-archive blocks"
    assert reason in name
    with pytest.raises(BadRecordError, match=r"cut\.tar.*corrupt_shard"):
        list(source.iter_samples(strict=True))
