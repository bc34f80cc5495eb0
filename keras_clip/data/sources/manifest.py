"""The "manifest" kind: a CSV / TSV / JSONL file of (image path, caption[, label]) rows.

Rows sharing an image are grouped: their captions form the image's caption
list. Paths are relative to the manifest's folder (or `root`). Problems
(empty or non-UTF-8 captions, unparsable rows or labels, conflicting
labels) are bad records: skipped and listed in `source.problems`, or raised
with `strict=True`.
"""

import csv
import io
import json
import os

from keras_clip.data import bad_records as br
from keras_clip.data.sources.base import parse_label, register_source
from keras_clip.data.sources.records import Collector, RecordSource

MANIFEST_FORMATS = ("csv", "tsv", "jsonl")
MANIFEST_OPTIONS = ("image_column", "caption_column", "label_column", "separator", "root", "format")


def manifest_format(path):
    """"csv", "tsv" or "jsonl" from the file name (".json" reads as JSONL), or None."""
    lower = os.fspath(path).lower()
    for fmt in MANIFEST_FORMATS:
        if lower.endswith("." + fmt):
            return fmt
    if lower.endswith(".json"):
        return "jsonl"
    return None


def _read_rows(path, fmt, separator):
    """(columns found, [(line number, dict or error string)])."""
    with open(path, "rb") as handle:
        data = handle.read()
    # Undecodable bytes survive as lone surrogates: a row is checked
    # field by field instead of failing the whole file.
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if fmt == "jsonl":
        rows, columns = [], set()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"a JSON {type(row).__name__}, not an object")
            except ValueError as error:
                rows.append((number, f"invalid JSON line: {error}"))
                continue
            columns.update(row)
            rows.append((number, row))
        return sorted(columns), rows
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    header = next(reader, None)
    if header is None:
        return [], []
    header = [column.strip() for column in header]
    rows = []
    for fields in reader:
        number = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            rows.append((number, f"{len(fields)} fields but the header has {len(header)}"))
            continue
        rows.append((number, dict(zip(header, fields))))
    return header, rows


def _has_surrogates(text):
    """True if `text` came from bytes that are not valid UTF-8."""
    return any("\udc80" <= char <= "\udcff" for char in text)


class ManifestSource(RecordSource):
    """A CSV / TSV / JSONL manifest; `format` is "csv", "tsv" or "jsonl".

    Options (`open_source(path, **options)`): `image_column="filepath"`,
    `caption_column="caption"`, `label_column=None` (None: use a `"label"`
    column if there is one; a name: that column is required),
    `separator=None` ("," for csv, tab for tsv), `root=None` (the folder
    paths are relative to; default the manifest's), `format=None` (default
    from the extension).
    """

    def __init__(self, path, records, has_labels=False, problems=(), format="csv"):
        super().__init__(path, records, has_labels, problems)
        self.format = format

    @classmethod
    def open(
        cls, path, strict=False, image_column="filepath", caption_column="caption",
        label_column=None, separator=None, root=None, format=None,
    ):
        path = os.fspath(path)
        fmt = format or manifest_format(path)
        if fmt not in MANIFEST_FORMATS:
            raise ValueError(f"format must be one of {list(MANIFEST_FORMATS)}; received {format!r}.")
        if separator is None:
            separator = "\t" if fmt == "tsv" else ","
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Manifest file {path!r} does not exist (resolved to {os.path.abspath(path)!r})."
            )
        columns, rows = _read_rows(path, fmt, separator)
        if not columns and not rows:
            raise ValueError(
                f"Manifest {path!r} is empty (no header and no rows); it needs a "
                f"header with {image_column!r} and {caption_column!r} columns "
                "and one row per image-caption pair."
            )
        required = [image_column, caption_column] + ([label_column] if label_column is not None else [])
        for column in required:
            if column not in columns:
                option = {image_column: "image_column", caption_column: "caption_column"}.get(
                    column, "label_column"
                )
                raise ValueError(
                    f"Manifest {path!r} has no {column!r} column; columns found: "
                    f"{list(columns)}. Rename the column or pass {option}='<name>'."
                )
        use_labels = (label_column or "label") in columns
        label_column = label_column or "label"
        base = root if root is not None else os.path.dirname(os.path.abspath(path))
        manifest_name = os.path.basename(path)
        collector = Collector(strict)
        for number, row in rows:
            where = f"{manifest_name} line {number}"
            if isinstance(row, str):
                collector.problem(br.MALFORMED_ROW, where, row)
                continue
            file_value = row.get(image_column)
            caption = row.get(caption_column)
            if not isinstance(file_value, str) or not file_value.strip():
                collector.problem(br.MALFORMED_ROW, where, f"{image_column} is {file_value!r}")
                continue
            # Paths may hold any bytes: os.fsencode undoes surrogateescape.
            image_path = os.fsdecode(os.fsencode(file_value.strip()))
            if not os.path.isabs(image_path):
                image_path = os.path.join(base, image_path)
            name = f"{image_path} ({where})"
            if caption is None or (isinstance(caption, str) and not caption.strip()):
                collector.problem(br.EMPTY_CAPTION, name, f"caption {caption!r}")
                continue
            if not isinstance(caption, str):
                collector.problem(br.MALFORMED_ROW, name, f"caption {caption!r} is not a string")
                continue
            if _has_surrogates(caption):
                collector.problem(
                    br.NON_UTF8_CAPTION, name, repr(caption.encode("utf-8", "surrogateescape")[:60])
                )
                continue
            label = None
            if use_labels:
                label, problem = parse_label(row.get(label_column))
                if problem:
                    collector.problem(br.INVALID_LABEL, name, problem)
                    continue
            collector.add(image_path, caption, label, where, use_labels)
        records = collector.records()
        if not records:
            raise ValueError(
                f"Manifest {path!r} has no usable rows ({len(rows)} row(s), "
                f"{len(collector.problems)} bad: "
                f"{[p[0] for p in collector.problems[:5]]}); nothing to train on."
            )
        return cls(path, records, use_labels, collector.problems, format=fmt)


def _detect(spec, options):
    return isinstance(spec, (str, os.PathLike)) and (
        manifest_format(spec) is not None or "format" in options
    )


register_source("manifest", ManifestSource, detect=_detect)
