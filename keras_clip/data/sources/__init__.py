"""Data sources: one module per kind, found through a registry.

Built-in kinds: "manifest" (CSV / TSV / JSONL), "folder" (images with
sidecar captions), "shards" (WebDataset-style tar shards), "shapes" (the
embedded synthetic set). A new kind is one file: a `DataSource` subclass
and one `register_source(kind, cls, detect=None)` line (see
docs/extending_data_sources.md).
"""

import inspect
import os

from keras_clip.data.sources.base import (  # noqa: F401
    DataSource,
    ImageRecord,
    Sample,
    detect_kind,
    get_source_class,
    register_source,
    source_kinds,
)
from keras_clip.data.sources.records import RecordSource  # noqa: F401
from keras_clip.data.sources.manifest import MANIFEST_FORMATS, ManifestSource  # noqa: F401
from keras_clip.data.sources.folder import IMAGE_EXTENSIONS, FolderSource  # noqa: F401
from keras_clip.data.sources.shards import SHARD_SUFFIXES, ShardSource, expand_braces  # noqa: F401
from keras_clip.data.sources.shapes import ShapesSource  # noqa: F401


def _check_options(cls, options):
    """Unknown options name the kind and the valid ones (not a bare TypeError)."""
    parameters = inspect.signature(cls.open).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        init = inspect.signature(cls.__init__).parameters
        if any(p.kind is p.VAR_KEYWORD for p in init.values()):
            return
        parameters = init
    allowed = sorted(name for name in parameters if name not in ("self", "cls", "spec", "path", "strict"))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"Unknown option(s) {unknown} for a {cls.kind} source; valid options: {allowed}.")


def open_source(spec, strict=False, **options):
    """Opens a data source.

    Args:
        spec: one of
            - a dict with a `"kind"` key (a registered kind) and that kind's
              options, e.g. `{"kind": "shapes", "split": "train",
              "num_examples": 1000, "image_size": 64}` or
              `{"kind": "manifest", "path": "train.csv"}`;
            - a `.csv` / `.tsv` / `.jsonl` manifest path (columns
              `filepath`, `caption`, optional `label`; paths relative to the
              manifest's folder);
            - a folder of images with sidecar caption files (`cat.jpg` +
              `cat.txt`, one caption per line);
            - a tar shard path, a brace pattern (`"data-{000..099}.tar"`), a
              glob (`"data/*.tar"`) or a list of those;
            - an already opened `DataSource` (returned as it is).
        strict: bool. Raise `BadRecordError` at the first bad row instead
            of skipping it (skipped rows are listed in `source.problems`
            and copied into each dataset's report).
        **options: the kind's options (see `ManifestSource`,
            `FolderSource`, `ShardSource`, `ShapesSource`).

    Returns:
        A `DataSource`.

    Raises:
        FileNotFoundError: the manifest, folder or every shard is missing.
        ValueError: unknown kind, a required column is missing (the message
            lists the columns found), or the source holds nothing usable.
        BadRecordError: with `strict=True`, at the first bad row.
    """
    if isinstance(spec, DataSource):
        if options:
            raise TypeError(
                f"options {sorted(options)} cannot be applied to an already "
                "opened source; pass them to open_source instead."
            )
        return spec
    if isinstance(spec, dict):
        if "kind" not in spec:
            raise ValueError(f"A dict source needs a 'kind' key (one of {source_kinds()}); received {spec!r}.")
        params = {k: v for k, v in spec.items() if k != "kind"}
        cls = get_source_class(spec["kind"])
        options = {**params, **options}
        path = options.pop("path", None)
        _check_options(cls, options)
        return cls.open(path, strict=strict, **options) if path is not None else cls.open(strict=strict, **options)
    if not isinstance(spec, (str, os.PathLike, list, tuple)):
        raise TypeError(
            "source must be a path (manifest, folder, tar shard or brace "
            f"pattern), a list of tar paths or a dict with a 'kind'; received {spec!r} of type "
            f"{type(spec).__name__}."
        )
    kind = detect_kind(spec, options)
    if kind is None:
        if not os.path.exists(os.fspath(spec)):
            raise FileNotFoundError(
                f"source {spec!r} does not exist. Pass a .csv/.tsv/.jsonl "
                "manifest, an image folder, or tar shards."
            )
        raise ValueError(
            f"Cannot tell what kind of source {spec!r} is: expected a "
            f"manifest ending in {['.' + f for f in MANIFEST_FORMATS]} (or pass "
            f"format=...), a folder, or tar shards ending in {list(SHARD_SUFFIXES)}."
        )
    cls = get_source_class(kind)
    _check_options(cls, options)
    return cls.open(spec, strict=strict, **options)


__all__ = [
    "DataSource", "FolderSource", "ImageRecord", "ManifestSource", "RecordSource", "Sample",
    "ShapesSource", "ShardSource", "expand_braces", "get_source_class", "open_source",
    "register_source", "source_kinds",
]
