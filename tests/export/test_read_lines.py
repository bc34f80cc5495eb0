"""Class-name / template files, version numbering and argument checks (no export)."""

import types

import pytest

from keras_clip.export import export_saved_model, next_version, read_lines


def test_read_lines_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# colours and shapes\nred circle\n\n   blue square  \n  # indented comment\ncolour #1\n\t\n", encoding="utf-8")
    assert read_lines(str(path)) == ["red circle", "blue square", "colour #1"]


def test_read_lines_keeps_unicode_and_template_braces(tmp_path):
    path = tmp_path / "templates.txt"
    path.write_text("a photo of a {}.\nune photo d'un {} élégant\n", encoding="utf-8")
    assert read_lines(path) == ["a photo of a {}.", "une photo d'un {} élégant"]


def test_read_lines_of_an_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nothing\n\n", encoding="utf-8")
    assert read_lines(str(path)) == []


def test_read_lines_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "no_such_classes.txt")
    with pytest.raises(FileNotFoundError, match="no_such_classes.txt"):
        read_lines(missing)


def test_next_version(tmp_path):
    assert next_version(str(tmp_path / "absent")) == 1
    assert next_version(str(tmp_path)) == 1
    for name in ("1", "7", "not-a-version", ".tmp-8-abc"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a version folder")
    assert next_version(str(tmp_path)) == 8


# A stand-in with what the argument checks read (they run before any export work).
FAKE = types.SimpleNamespace(embed_dim=4, tokenizer=None)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"templates": ["a {}"]}, ValueError, "templates were given without class_names"),
        ({"class_names": ["cat"]}, ValueError, "class_names need class_embeddings"),
        ({"class_names": []}, ValueError, "class_names is empty"),
        ({"class_names": ["cat"], "class_embeddings": [[1.0, 0.0]]}, ValueError, r"need \(1, 4\)"),
        ({"serving_default": "encode_text_strings"}, ValueError, "serving_default must be one of"),
        ({"version": -1}, ValueError, "non-negative int"),
        ({"version": "2"}, ValueError, "non-negative int"),
    ],
)
def test_bad_arguments_are_refused_before_exporting(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export_saved_model(FAKE, str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()


def test_export_path_that_is_a_file(tmp_path):
    path = tmp_path / "model"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        export_saved_model(FAKE, str(path))
