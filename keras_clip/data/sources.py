"""Image-caption sources: manifests (CSV / TSV / JSONL), caption folders, tar shards.

`open_source(source, **options)` reads what is cheap to read up front and
returns either

- a `RecordSource` (manifest or folder): `.records`, a list of
  `ImageRecord(path, captions, label)`, one per image (rows sharing an image
  are grouped: their captions form the image's caption list); or
- a `ShardSource` (WebDataset-style tar shards): `.shards`, the list of tar
  paths, streamed later by `iter_shard(shard)` without unpacking to disk.

Problems found while reading (empty or non-UTF-8 captions, unparsable rows or
labels, an image without its caption file) are bad records: with
`strict=True` the first raises `BadRecordError`; otherwise each is recorded in
`source.problems` (which `image_text_dataset` copies into its
`BadRecordReport`) and skipped; tar shards are only read while streaming, so
their problems go to the report given to `iter_shard`. Image
files themselves (missing, empty, corrupt, truncated, too large) are checked
when they are decoded, by `keras_clip.data.image_pipeline`.
"""

import csv
import dataclasses
import glob
import io
import json
import os
import re
import tarfile

from keras_clip.data import bad_records as br

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
MANIFEST_FORMATS = ("csv", "tsv", "jsonl")

_MANIFEST_OPTIONS = (
    "image_column", "caption_column", "label_column", "separator", "root", "format",
)
_FOLDER_OPTIONS = ("caption_extension", "image_extensions", "recursive")
_SHARD_OPTIONS = (
    "labels", "caption_field", "label_field", "image_extensions",
)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image and all its captions.

    Attributes:
        path: str, the image file path (resolved against the manifest's
            folder or `root`).
        captions: tuple of str, at least one, non-empty.
        label: int or None.
    """

    path: str
    captions: tuple
    label: int = None


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sample read from a tar shard (image still encoded)."""

    name: str  # "shard.tar:key.jpg"
    image: bytes
    captions: tuple
    label: int = None


class RecordSource:
    """A manifest or caption folder read into memory.

    Attributes:
        kind: "csv", "tsv", "jsonl" or "folder".
        path: the manifest file or folder.
        records: list of `ImageRecord`, in file order (first appearance).
        has_labels: bool, whether every record has an int label.
        problems: list of `(reason, name, detail)` skipped while reading.
    """

    def __init__(self, kind, path, records, has_labels, problems):
        self.kind = kind
        self.path = path
        self.records = records
        self.has_labels = has_labels
        self.problems = problems

    def __len__(self):
        return len(self.records)

    @property
    def num_captions(self):
        return sum(len(r.captions) for r in self.records)

    def __repr__(self):
        return (
            f"RecordSource(kind={self.kind!r}, path={self.path!r}, "
            f"images={len(self.records)}, captions={self.num_captions}, "
            f"has_labels={self.has_labels}, problems={len(self.problems)})"
        )


class ShardSource:
    """WebDataset-style tar shards, streamed sample by sample.

    A sample is the run of consecutive tar members sharing a key (the member
    path up to the first "." of its file name): `KEY.jpg|jpeg|png|...` for
    the image and `KEY.txt` (one caption per line) or `KEY.json` (a
    `"caption"` field: a string or a list of strings) for the captions;
    with `labels=True`, `KEY.cls` (an int) or the json's `"label"` field.

    Attributes:
        kind: "tar".
        shards: list of str, the tar paths (brace patterns expanded).
        has_labels: bool (the `labels` option).
    """

    kind = "tar"

    def __init__(
        self,
        shards,
        labels=False,
        caption_field="caption",
        label_field="label",
        image_extensions=IMAGE_EXTENSIONS,
    ):
        self.shards = list(shards)
        self.has_labels = bool(labels)
        self.caption_field = caption_field
        self.label_field = label_field
        self.image_extensions = tuple(
            e.lower().lstrip(".") for e in image_extensions
        )
        self.problems = []

    def __len__(self):
        return len(self.shards)

    def __repr__(self):
        return f"ShardSource(shards={len(self.shards)}, has_labels={self.has_labels})"

    def iter_shard(self, shard, report=None, strict=False):
        """Yields the `Sample`s of one shard, streamed (no unpacking to disk).

        Samples lacking an image or a caption, with bad captions or labels
        are reported (`report`) and skipped, or raise with `strict=True`. A
        missing shard, or one that is corrupt or truncated, is reported once
        and ends the shard (the samples read so far are kept).
        """
        shard = os.fsdecode(shard)
        if not os.path.exists(shard):
            br.report_bad_record(report, strict, br.MISSING_FILE, shard)
            return
        group_key = None
        members = {}
        try:
            with tarfile.open(shard, mode="r|*") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    directory, base = os.path.split(member.name)
                    if "." not in base:
                        continue
                    stem, extension = base.split(".", 1)
                    key = os.path.join(directory, stem)
                    if key != group_key:
                        if group_key is not None:
                            sample = self._make_sample(
                                shard, group_key, members, report, strict
                            )
                            if sample is not None:
                                yield sample
                        group_key, members = key, {}
                    fileobj = archive.extractfile(member)
                    members[extension.lower()] = fileobj.read()
        except (tarfile.TarError, EOFError, OSError, ValueError) as error:
            if isinstance(error, br.BadRecordError):
                raise
            br.report_bad_record(
                report, strict, br.CORRUPT_SHARD, shard,
                f"{type(error).__name__}: {error}",
            )
            return
        if group_key is not None:
            sample = self._make_sample(shard, group_key, members, report, strict)
            if sample is not None:
                yield sample

    def iter_samples(self, report=None, strict=False):
        """Yields the samples of all shards in order."""
        for shard in self.shards:
            yield from self.iter_shard(shard, report=report, strict=strict)

    def _make_sample(self, shard, key, members, report, strict):
        image_ext = next(
            (e for e in self.image_extensions if e in members), None
        )
        caption_ext = next((e for e in ("txt", "json") if e in members), None)
        if image_ext is None:
            if caption_ext is None:
                return None  # neither: some other data, not ours
            br.report_bad_record(
                report, strict, br.MISSING_IMAGE, f"{shard}:{key}.{caption_ext}",
                "no image member with the same key",
            )
            return None
        name = f"{shard}:{key}.{image_ext}"
        if caption_ext is None:
            br.report_bad_record(
                report, strict, br.MISSING_CAPTION, name,
                "no .txt or .json member with the same key",
            )
            return None
        meta = None
        if caption_ext == "txt":
            captions = _captions_from_lines(
                members["txt"],
                f"{shard}:{key}.txt",
                lambda kind, where, reason: br.report_bad_record(report, strict, kind, where, reason),
            )
        else:
            try:
                meta = json.loads(members["json"].decode("utf-8"))
                raw = meta[self.caption_field] if isinstance(meta, dict) else None
                if raw is None:
                    raise KeyError(self.caption_field)
            except UnicodeDecodeError:
                br.report_bad_record(
                    report, strict, br.NON_UTF8_CAPTION, f"{shard}:{key}.json"
                )
                return None
            except (ValueError, KeyError, TypeError) as error:
                br.report_bad_record(
                    report, strict, br.MALFORMED_ROW, f"{shard}:{key}.json",
                    f"needs a JSON object with a {self.caption_field!r} "
                    f"field ({type(error).__name__}: {error})",
                )
                return None
            raw = [raw] if isinstance(raw, str) else raw
            captions = []
            for caption in raw if isinstance(raw, list) else [raw]:
                if not isinstance(caption, str) or not caption.strip():
                    br.report_bad_record(
                        report, strict, br.EMPTY_CAPTION, f"{shard}:{key}.json",
                        f"caption {caption!r}",
                    )
                    continue
                captions.append(caption)
        if not captions:
            return None
        label = None
        if self.has_labels:
            value = None
            if "cls" in members:
                value = members["cls"].decode("utf-8", "replace").strip()
            elif isinstance(meta, dict):
                value = meta.get(self.label_field)
            label, problem = _parse_label(value)
            if problem:
                br.report_bad_record(report, strict, br.INVALID_LABEL, name, problem)
                return None
        return Sample(name, members[image_ext], tuple(captions), label)


# ---------------------------------------------------------------------- #
# Brace patterns
# ---------------------------------------------------------------------- #
def _matching_brace(text, start):
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _split_top_level(text):
    parts, depth, begin = [], 0, 0
    for index, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[begin:index])
            begin = index + 1
    parts.append(text[begin:])
    return parts


def expand_braces(pattern):
    """Expands shell-style braces: `"a-{000..002}.tar"`, `"{x,y}.tar"`.

    Numeric ranges keep zero padding (`{000..002}` -> 000, 001, 002; a
    negative step is allowed: `{3..1}`). Several and nested groups expand
    as the shell does, left to right.

    Returns:
        list of str.
    """
    start = pattern.find("{")
    while start != -1:
        end = _matching_brace(pattern, start)
        if end == -1:
            break
        body = pattern[start + 1 : end]
        prefix, suffix = pattern[:start], pattern[end + 1 :]
        match = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
        if match:
            first, last = match.group(1), match.group(2)
            width = max(len(first), len(last)) if (
                first.lstrip("-").startswith("0") or last.lstrip("-").startswith("0")
            ) else 0
            a, b = int(first), int(last)
            step = 1 if b >= a else -1
            options = [str(i).zfill(width) for i in range(a, b + step, step)]
        else:
            options = _split_top_level(body)
            if len(options) == 1:  # "{abc}" is literal, look further on
                start = pattern.find("{", start + 1)
                continue
        return [
            expanded
            for option in options
            for expanded in expand_braces(prefix + option + suffix)
        ]
    return [pattern]


# ---------------------------------------------------------------------- #
# Helpers
# ---------------------------------------------------------------------- #
def _has_surrogates(text):
    """True if `text` came from bytes that are not valid UTF-8."""
    return any("\udc80" <= char <= "\udcff" for char in text)


def _parse_label(value):
    """-> (int label, None) or (None, problem description)."""
    if isinstance(value, bool):
        return None, f"label {value!r} is not an integer"
    if isinstance(value, int):
        return int(value), None
    if isinstance(value, float) and value.is_integer():
        return int(value), None
    if isinstance(value, str):
        try:
            return int(value.strip()), None
        except ValueError:
            pass
    return None, f"label {value!r} is not an integer"


def _captions_from_lines(data, name, problem):
    """Non-empty lines of a caption file (bytes) -> list of str.

    `problem(kind, where, reason)` receives each bad line (not UTF-8) and,
    when no line is usable and none was bad, the empty file."""
    captions = []
    undecodable = 0
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            caption = line.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as error:
            undecodable += 1
            problem(br.NON_UTF8_CAPTION, f"{name} line {number}", str(error))
            continue
        if caption.strip():
            captions.append(caption)
    if not captions and not undecodable:
        problem(br.EMPTY_CAPTION, name, "no caption line")
    return captions


def _check_options(kind, options, allowed):
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"Unknown option(s) {unknown} for a {kind} source; valid options: "
            f"{sorted(allowed)}."
        )


class _Collector:
    """Groups caption rows by image path, collecting problems."""

    def __init__(self, strict):
        self.strict = strict
        self.problems = []
        self.by_path = {}  # path -> [captions list, label]
        self.order = []

    def problem(self, reason, name, detail=""):
        br.report_bad_record(None, self.strict, reason, name, detail)
        self.problems.append((reason, name, detail))

    def add(self, path, caption, label, where, use_labels):
        entry = self.by_path.get(path)
        if use_labels and entry is not None and entry[1] != label:
            self.problem(
                br.INVALID_LABEL, f"{path} ({where})",
                f"label {label} differs from this image's earlier label {entry[1]}",
            )
            return
        if entry is None:
            entry = self.by_path[path] = [[], label]
            self.order.append(path)
        entry[0].append(caption)

    def records(self):
        return [
            ImageRecord(path, tuple(self.by_path[path][0]), self.by_path[path][1])
            for path in self.order
        ]


# ---------------------------------------------------------------------- #
# Manifests
# ---------------------------------------------------------------------- #
def _read_manifest_rows(path, fmt, separator):
    """Yields (line number, dict or error string) for each data row, and
    first the list of columns found."""
    with open(path, "rb") as handle:
        data = handle.read()
    # Undecodable bytes survive as lone surrogates: a row is checked
    # field by field instead of failing the whole file.
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if fmt == "jsonl":
        rows = []
        columns = set()
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
            rows.append(
                (number, f"{len(fields)} fields but the header has {len(header)}")
            )
            continue
        rows.append((number, dict(zip(header, fields))))
    return header, rows


def _open_manifest(
    path,
    strict,
    image_column="filepath",
    caption_column="caption",
    label_column=None,
    separator=None,
    root=None,
    format=None,
):
    fmt = format or _manifest_format(path)
    if fmt not in MANIFEST_FORMATS:
        raise ValueError(
            f"format must be one of {list(MANIFEST_FORMATS)}; received {format!r}."
        )
    if separator is None:
        separator = "\t" if fmt == "tsv" else ","
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Manifest file {path!r} does not exist (resolved to "
            f"{os.path.abspath(path)!r})."
        )
    columns, rows = _read_manifest_rows(path, fmt, separator)
    if not columns and not rows:
        raise ValueError(
            f"Manifest {path!r} is empty (no header and no rows); it needs a "
            f"header with {image_column!r} and {caption_column!r} columns "
            "and one row per image-caption pair."
        )
    required = [image_column, caption_column]
    if label_column is not None:
        required.append(label_column)
    for column in required:
        if column not in columns:
            option = {
                image_column: "image_column",
                caption_column: "caption_column",
            }.get(column, "label_column")
            raise ValueError(
                f"Manifest {path!r} has no {column!r} column; columns found: "
                f"{list(columns)}. Rename the column or pass "
                f"{option}='<name>'."
            )
    use_labels = (label_column or "label") in columns
    label_column = label_column or "label"
    base = root if root is not None else os.path.dirname(os.path.abspath(path))
    manifest_name = os.path.basename(path)
    collector = _Collector(strict)
    for number, row in rows:
        where = f"{manifest_name} line {number}"
        if isinstance(row, str):
            collector.problem(br.MALFORMED_ROW, where, row)
            continue
        file_value = row.get(image_column)
        caption = row.get(caption_column)
        if not isinstance(file_value, str) or not file_value.strip():
            collector.problem(
                br.MALFORMED_ROW, where, f"{image_column} is {file_value!r}"
            )
            continue
        file_value = file_value.strip()
        # Paths may hold any bytes: os.fsencode undoes surrogateescape.
        image_path = os.fsdecode(os.fsencode(file_value))
        if not os.path.isabs(image_path):
            image_path = os.path.join(base, image_path)
        name = f"{image_path} ({where})"
        if caption is None or (isinstance(caption, str) and not caption.strip()):
            collector.problem(br.EMPTY_CAPTION, name, f"caption {caption!r}")
            continue
        if not isinstance(caption, str):
            collector.problem(
                br.MALFORMED_ROW, name, f"caption {caption!r} is not a string"
            )
            continue
        if _has_surrogates(caption):
            collector.problem(
                br.NON_UTF8_CAPTION, name,
                repr(caption.encode("utf-8", "surrogateescape")[:60]),
            )
            continue
        label = None
        if use_labels:
            label, problem = _parse_label(row.get(label_column))
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
    return RecordSource(fmt, path, records, use_labels, collector.problems)


def _manifest_format(path):
    lower = path.lower()
    for fmt in MANIFEST_FORMATS:
        if lower.endswith("." + fmt):
            return fmt
    if lower.endswith(".json"):
        return "jsonl"
    return None


# ---------------------------------------------------------------------- #
# Caption folders
# ---------------------------------------------------------------------- #
def _open_folder(
    path,
    strict,
    caption_extension=".txt",
    image_extensions=IMAGE_EXTENSIONS,
    recursive=True,
):
    extensions = {"." + e.lower().lstrip(".") for e in image_extensions}
    caption_extension = "." + caption_extension.lstrip(".")
    images = []
    for directory, subdirs, files in os.walk(path):
        subdirs.sort()
        for file in sorted(files):
            if os.path.splitext(file)[1].lower() in extensions:
                images.append(os.path.join(directory, file))
        if not recursive:
            break
    if not images:
        raise ValueError(
            f"Image folder {path!r} holds no images (looked for files ending "
            f"in {sorted(extensions)}{', recursively' if recursive else ''})."
        )
    collector = _Collector(strict)
    for image_path in images:
        caption_path = os.path.splitext(image_path)[0] + caption_extension
        try:
            with open(caption_path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            collector.problem(
                br.MISSING_CAPTION, image_path, f"no {os.path.basename(caption_path)}"
            )
            continue
        except OSError as error:
            collector.problem(br.UNREADABLE_FILE, caption_path, str(error))
            continue
        captions = _captions_from_lines(data, caption_path, collector.problem)
        for caption in captions:
            collector.add(image_path, caption, None, caption_path, False)
    records = collector.records()
    if not records:
        raise ValueError(
            f"Image folder {path!r} has {len(images)} image(s) but none with a "
            f"usable {caption_extension} caption file "
            f"({len(collector.problems)} bad record(s))."
        )
    return RecordSource("folder", path, records, False, collector.problems)


# ---------------------------------------------------------------------- #
# Entry point
# ---------------------------------------------------------------------- #
def _is_shard_path(path):
    return path.lower().endswith(SHARD_SUFFIXES)


def _expand_shards(patterns):
    shards = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        for expanded in expand_braces(pattern):
            if any(c in expanded for c in "*?["):
                shards.extend(sorted(glob.glob(expanded)))
            else:
                shards.append(expanded)
    return shards


def open_source(source, strict=False, **options):
    """Opens an image-caption source; see the module docstring.

    Args:
        source: one of
            - a `.csv` / `.tsv` / `.jsonl` manifest path (columns
              `filepath`, `caption`, optional `label`; paths relative to
              the manifest's folder);
            - a folder of images with sidecar caption files (`cat.jpg` +
              `cat.txt`, one caption per line);
            - a tar shard path, a brace pattern (`"data-{000..099}.tar"`),
              a glob (`"data/*.tar"`) or a list of those.
        strict: bool. Raise `BadRecordError` at the first bad row instead
            of skipping it (skipped rows are listed in `source.problems`;
            `image_text_dataset` copies them into its report).
        **options: per kind. Manifests: `image_column="filepath"`,
            `caption_column="caption"`, `label_column=None` (None: use a
            `"label"` column if there is one; a name: that column is
            required), `separator=None` (inferred: "," for .csv, tab for
            .tsv), `root=None` (folder the paths are relative to; default
            the manifest's folder), `format=None` ("csv", "tsv", "jsonl";
            default from the extension). Folders:
            `caption_extension=".txt"`, `image_extensions`,
            `recursive=True`. Tar shards: `labels=False` (read an int label
            from `KEY.cls` or the json's `label_field`),
            `caption_field="caption"`, `label_field="label"`,
            `image_extensions`.

    Returns:
        A `RecordSource` (`.records`: list of `ImageRecord`) or a
        `ShardSource` (`.shards`: list of tar paths).

    Raises:
        FileNotFoundError: the manifest, folder or every shard is missing.
        ValueError: a required column is missing (the message lists the
            columns found), or the source holds nothing usable.
        BadRecordError: with `strict=True`, at the first bad row.
    """
    if isinstance(source, (RecordSource, ShardSource)):
        if options:
            raise TypeError(
                f"options {sorted(options)} cannot be applied to an already "
                "opened source; pass them to open_source instead."
            )
        return source
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("source is an empty list; pass at least one tar shard path.")
        not_tar = [s for s in source if not _is_shard_path(os.fspath(s))]
        if not_tar:
            raise ValueError(
                "A list source must hold tar shard paths (ending in "
                f"{list(SHARD_SUFFIXES)}); received {not_tar[:3]}."
            )
        return _open_shards(source, strict, options)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "source must be a path (manifest, folder, tar shard or brace "
            f"pattern) or a list of tar paths; received {source!r} of type "
            f"{type(source).__name__}."
        )
    source = os.fspath(source)
    if _is_shard_path(source):
        return _open_shards([source], strict, options)
    if os.path.isdir(source):
        _check_options("folder", options, _FOLDER_OPTIONS)
        return _open_folder(source, strict, **options)
    if _manifest_format(source) or "format" in options:
        _check_options("manifest", options, _MANIFEST_OPTIONS)
        return _open_manifest(source, strict, **options)
    if not os.path.exists(source):
        raise FileNotFoundError(
            f"source {source!r} does not exist. Pass a .csv/.tsv/.jsonl "
            "manifest, an image folder, or tar shards."
        )
    raise ValueError(
        f"Cannot tell what kind of source {source!r} is: expected a "
        f"manifest ending in {['.' + f for f in MANIFEST_FORMATS]} (or pass "
        f"format=...), a folder, or tar shards ending in {list(SHARD_SUFFIXES)}."
    )


def _open_shards(patterns, strict, options):
    _check_options("tar shard", options, _SHARD_OPTIONS)
    shards = _expand_shards(patterns)
    if not shards:
        raise ValueError(
            f"Shard pattern(s) {list(map(os.fspath, patterns))} matched no files."
        )
    missing = [s for s in shards if not os.path.exists(s)]
    if len(missing) == len(shards):
        raise FileNotFoundError(
            f"None of the {len(shards)} tar shard(s) exist (first: {shards[0]!r})."
        )
    if missing and strict:
        raise br.BadRecordError(br.MISSING_FILE, missing[0], "tar shard does not exist")
    return ShardSource(shards, **options)
