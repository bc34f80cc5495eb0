"""open_source: manifests (CSV/TSV/JSONL), caption folders, tar shards, errors."""

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from keras_clip.data.bad_records import BadRecordError, BadRecordReport
from keras_clip.data.sources import (
    ImageRecord,
    RecordSource,
    ShardSource,
    expand_braces,
    open_source,
)


def _png(path, size=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)).save(path)


def _png_bytes(seed=0):
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _write_tar(path, members):
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------------- #
# Brace patterns
# ---------------------------------------------------------------------- #
def test_expand_braces():
    assert expand_braces("d-{000..002}.tar") == ["d-000.tar", "d-001.tar", "d-002.tar"]
    assert expand_braces("{a,b}-{1..2}.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"]
    assert expand_braces("x{3..1}") == ["x3", "x2", "x1"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    assert expand_braces("{lit}.tar") == ["{lit}.tar"]
    assert expand_braces("{a,{b,c}}") == ["a", "b", "c"]


# ---------------------------------------------------------------------- #
# Manifests
# ---------------------------------------------------------------------- #
def test_csv_groups_captions_and_labels(tmp_path):
    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    (tmp_path / "m.csv").write_text(
        'filepath,caption,label\nimg/a.png,"a cat, sitting",1\n'
        "img/b.png,a dog,0\nimg/a.png,another cat,1\n"
    )
    source = open_source(str(tmp_path / "m.csv"))
    assert isinstance(source, RecordSource) and source.kind == "manifest" and source.format == "csv"
    assert source.has_labels and not source.problems
    assert source.records == [
        ImageRecord(str(tmp_path / "img" / "a.png"), ("a cat, sitting", "another cat"), 1),
        ImageRecord(str(tmp_path / "img" / "b.png"), ("a dog",), 0),
    ]
    assert source.num_captions == 3


def test_tsv_custom_columns_and_jsonl(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.tsv").write_text("path\ttext\na.png\ta cat\n")
    source = open_source(str(tmp_path / "m.tsv"), image_column="path", caption_column="text")
    assert source.format == "tsv" and not source.has_labels
    assert source.records[0].captions == ("a cat",)
    # Explicit separator on an odd extension, via format=.
    (tmp_path / "m.txt").write_text("filepath;caption\na.png;a cat\n")
    source = open_source(str(tmp_path / "m.txt"), format="csv", separator=";")
    assert source.records[0].path == str(tmp_path / "a.png")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"filepath": "a.png", "caption": "a cat", "label": 2}) + "\n\n"
        + json.dumps({"filepath": "a.png", "caption": "a small cat", "label": 2}) + "\n"
    )
    source = open_source(str(tmp_path / "m.jsonl"))
    assert source.format == "jsonl" and source.has_labels
    assert source.records == [ImageRecord(str(tmp_path / "a.png"), ("a cat", "a small cat"), 2)]


def test_manifest_bad_rows_are_skipped_and_named(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    _png(tmp_path / "c.png")
    data = (
        b"filepath,caption,label\n"
        b"a.png,good,0\n"
        b"b.png,  ,0\n"  # empty caption
        b"c.png,bad \xff\xfe bytes,0\n"  # not UTF-8
        b"c.png,fine,x\n"  # label not an int
        b"c.png,too,many,fields\n"
        b"a.png,other label,1\n"  # conflicts with a.png's label 0
    )
    (tmp_path / "m.csv").write_bytes(data)
    source = open_source(str(tmp_path / "m.csv"))
    assert [r.path for r in source.records] == [str(tmp_path / "a.png")]
    reasons = [p[0] for p in source.problems]
    assert reasons == [
        "empty_caption", "non_utf8_caption", "invalid_label", "malformed_row", "invalid_label",
    ]
    names = [p[1] for p in source.problems]
    assert "b.png" in names[0] and "m.csv line 3" in names[0]
    assert "c.png" in names[1] and "line 4" in names[1]
    with pytest.raises(BadRecordError, match=r"b\.png.*empty_caption"):
        open_source(str(tmp_path / "m.csv"), strict=True)


def test_manifest_errors(tmp_path):
    (tmp_path / "m.csv").write_text("path,caption\na.png,a cat\n")
    with pytest.raises(ValueError, match=r"no 'filepath' column.*\['path', 'caption'\]"):
        open_source(str(tmp_path / "m.csv"))
    with pytest.raises(ValueError, match=r"no 'label' column"):
        open_source(str(tmp_path / "m.csv"), image_column="path", label_column="label")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        open_source(str(tmp_path / "nope.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        open_source(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text("filepath,caption\n")
    with pytest.raises(ValueError, match="no usable rows"):
        open_source(str(tmp_path / "header.csv"))
    with pytest.raises(TypeError, match="Unknown option"):
        open_source(str(tmp_path / "m.csv"), cycle=3)
    with pytest.raises(ValueError, match="Cannot tell"):
        (tmp_path / "x.dat").write_text("x")
        open_source(str(tmp_path / "x.dat"))


# ---------------------------------------------------------------------- #
# Caption folders
# ---------------------------------------------------------------------- #
def test_folder_with_sidecar_captions(tmp_path):
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "cat.png")
    (tmp_path / "cat.txt").write_text("a cat\n\na grey cat\n")
    _png(tmp_path / "sub" / "dog.png")
    (tmp_path / "sub" / "dog.txt").write_text("a dog")
    _png(tmp_path / "nocaption.png")
    _png(tmp_path / "blank.png")
    (tmp_path / "blank.txt").write_text("  \n")
    _png(tmp_path / "latin.png")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\nok caption\n")
    source = open_source(str(tmp_path))
    assert source.kind == "folder"
    by_name = {os.path.basename(r.path): r.captions for r in source.records}
    assert by_name == {
        "cat.png": ("a cat", "a grey cat"),
        "dog.png": ("a dog",),
        "latin.png": ("ok caption",),
    }
    problems = {p[0]: p[1] for p in source.problems}
    assert set(problems) == {"missing_caption", "empty_caption", "non_utf8_caption"}
    assert problems["missing_caption"].endswith("nocaption.png")
    assert problems["non_utf8_caption"].endswith("latin.txt line 1")


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        open_source(str(tmp_path))


# ---------------------------------------------------------------------- #
# Tar shards
# ---------------------------------------------------------------------- #
def test_tar_shards_streamed(tmp_path):
    _write_tar(tmp_path / "s-0.tar", [
        ("k1.png", _png_bytes(1)),
        ("k1.txt", b"first caption\nsecond caption\n"),
        ("dir/k2.jpg.png", _png_bytes(2)),  # key "dir/k2", ext "jpg.png" (not an image)
        ("k3.json", json.dumps({"caption": ["j1", "j2"], "label": 4}).encode()),
        ("k3.png", _png_bytes(3)),
        ("k4.png", _png_bytes(4)),  # no caption
        ("k5.txt", b"no image"),
        ("k6.png", _png_bytes(6)),
        ("k6.txt", b"bad \xff"),
        ("k7.cls", b"7"),
        ("k7.png", _png_bytes(7)),
        ("k7.txt", b"seven"),
    ])
    _write_tar(tmp_path / "s-1.tar", [("a.bmp", _png_bytes(8)), ("a.txt", b"x")])
    source = open_source(str(tmp_path / "s-{0..1}.tar"), labels=True)
    assert isinstance(source, ShardSource)
    assert source.shards == [str(tmp_path / "s-0.tar"), str(tmp_path / "s-1.tar")]
    report = BadRecordReport(log=False)
    samples = list(source.iter_samples(report=report))
    assert [(s.name.split(":")[1], s.captions, s.label) for s in samples] == [
        ("k3.png", ("j1", "j2"), 4),
        ("k7.png", ("seven",), 7),
    ]
    # k1 has no label (labels=True), k4 no caption, k5 no image, k6 bad text,
    # a.bmp no label.
    assert report.counts == {
        "invalid_label": 2, "missing_caption": 1, "missing_image": 1, "non_utf8_caption": 1,
    }
    source = open_source([str(tmp_path / "s-0.tar")])
    samples = list(source.iter_samples(report=report))
    assert samples[0].captions == ("first caption", "second caption")
    assert samples[0].label is None and samples[0].image == _png_bytes(1)


def test_corrupt_and_missing_shards(tmp_path):
    _write_tar(tmp_path / "good.tar", [("k.png", _png_bytes()), ("k.txt", b"ok")] * 1)
    data = (tmp_path / "good.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:700])  # ends inside the first member
    source = open_source([str(tmp_path / "cut.tar"), str(tmp_path / "gone.tar")])
    report = BadRecordReport(log=False)
    assert list(source.iter_samples(report=report)) == []
    assert report.counts == {"corrupt_shard": 1, "missing_file": 1}
    with pytest.raises(BadRecordError, match="gone.tar.*missing_file"):
        open_source([str(tmp_path / "good.tar"), str(tmp_path / "gone.tar")], strict=True)
    with pytest.raises(FileNotFoundError, match="None of the 2"):
        open_source(str(tmp_path / "none-{0..1}.tar"))
    with pytest.raises(ValueError, match="matched no files"):
        open_source(str(tmp_path / "*.tar.gz"))
    with pytest.raises(ValueError, match="empty list"):
        open_source([])
