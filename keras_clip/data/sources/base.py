"""`DataSource`, the interface every data source kind implements, and the registry.

A kind is a `DataSource` subclass registered under a name with
`register_source(kind, cls, detect=None)`; `open_source(spec)` finds it from
a dict's `"kind"` key or, for a path, by asking each kind's `detect`
(newest registration first, so a new kind can claim paths a built-in one
would take). A new kind is one file: its class plus one
`register_source(...)` line.
"""

import dataclasses

from keras_clip.data import bad_records as br
from keras_clip.data import dataset as builder
from keras_clip.data.bad_records import BadRecordReport


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image file and all its captions.

    Attributes:
        path: str, the image file path.
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


class DataSource:
    """An image-caption data source: what training and evaluation read.

    Subclasses set `kind` (by `register_source`), `has_labels`, and either
    override `dataset` / `eval_arrays` (in-memory arrays: `ShapesSource`)
    or implement the two hooks of the streamed-image builder
    (`keras_clip.data.dataset`): `prepare` and `elements` (image files
    and tar shards; `RecordSource` does it for a list of `ImageRecord`s).

    Attributes:
        kind: str, the registry name ("manifest", "folder", "shards", "shapes").
        has_labels: bool, whether batches carry `"labels"`.
        class_names: list of str or None, the known classes (zero-shot).
        templates: list of str or None, prompt templates for `class_names`.
    """

    kind = None
    has_labels = False
    class_names = None
    templates = None

    @classmethod
    def open(cls, spec, strict=False, **options):
        """Builds the source from a path (or the keys of a dict spec)."""
        return cls(spec, **options)

    @property
    def num_records(self):
        """Number of images, or None where unknown before reading (shards)."""
        return None

    def captions(self):
        """Every caption (for building a vocabulary), as a list of str."""
        raise NotImplementedError(f"{type(self).__name__} must implement captions().")

    def dataset(
        self, tokenizer, image_shape, batch_size, *, training, seed, epoch=None,
        strict=False, report=None, image_views=False, **options,
    ):
        """A `tf.data.Dataset` of model input dicts `{"images": float32 (B, H,
        W, 3), "token_ids": int32 (B, T)}` (+ `"labels"`, `"image_views"`).

        See `keras_clip.data.image_text_dataset` for the arguments; `epoch`
        keys every random choice by `(seed, epoch)`."""
        return builder.source_dataset(
            self, tokenizer, image_shape, batch_size, training=training, seed=seed,
            epoch=epoch, strict=strict, report=report, image_views=image_views, **options,
        )

    def eval_arrays(self, image_shape, max_examples=None, strict=False, **options):
        """dict(images=uint8 (N, H, W, 3), captions=list of M str,
        text_to_image=int32 (M,), labels=int32 (N,) or None,
        report=BadRecordReport); see `keras_clip.data.load_eval_arrays`."""
        return builder.source_eval_arrays(
            self, image_shape, max_examples=max_examples, strict=strict, **options
        )

    def validate(self, report=None, strict=False, max_pixels=builder.DEFAULT_MAX_PIXELS, num_threads=None):
        """Reads and decodes every record once; returns the `BadRecordReport`."""
        return BadRecordReport() if report is None else report

    # Hooks of the streamed-image builder (keras_clip.data.dataset).
    def prepare(self, strict, report, max_pixels):
        """Checks made before a pipeline is built (default: none)."""

    def elements(self, training, seed, reshuffle, report, strict, shuffle_buffer, cycle_length):
        """Unbatched tf.data elements; see `keras_clip.data.dataset`."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement elements() or override dataset()/eval_arrays()."
        )


# ---------------------------------------------------------------------- #
# Registry
# ---------------------------------------------------------------------- #
_REGISTRY = {}  # kind -> (cls, detect), in registration order


def register_source(kind, cls, detect=None):
    """Registers a `DataSource` subclass as `kind` (sets `cls.kind`).

    Args:
        kind: str, the name used in `{"kind": ...}` specs and configs.
        cls: a `DataSource` subclass; `cls.open(spec, strict=..., **options)`
            builds it (for a dict spec, its keys other than "kind" are the
            keyword arguments).
        detect: optional `detect(spec, options) -> bool`: whether a path
            (or list of paths) given to `open_source` is of this kind.

    Returns:
        `cls` (so it can be used as a decorator helper).
    """
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty str; received {kind!r}.")
    if not (isinstance(cls, type) and issubclass(cls, DataSource)):
        raise TypeError(f"cls must be a DataSource subclass; received {cls!r}.")
    if detect is not None and not callable(detect):
        raise TypeError(f"detect must be callable(spec, options) or None; received {detect!r}.")
    previous = _REGISTRY.get(kind)
    if previous is not None and previous[0].__qualname__ != cls.__qualname__:
        raise ValueError(
            f"Source kind {kind!r} is already registered to {previous[0].__qualname__}; "
            "choose another name."
        )
    _REGISTRY.pop(kind, None)
    _REGISTRY[kind] = (cls, detect)
    cls.kind = kind
    return cls


def source_kinds():
    """The registered kind names, in registration order."""
    return list(_REGISTRY)


def get_source_class(kind):
    if kind not in _REGISTRY:
        raise ValueError(f"Unknown source kind {kind!r}; registered kinds: {source_kinds()}.")
    return _REGISTRY[kind][0]


def detect_kind(spec, options):
    """The kind whose `detect` accepts `spec` (newest registration first), or None."""
    for kind, (_, detect) in reversed(list(_REGISTRY.items())):
        if detect is not None and detect(spec, options):
            return kind
    return None


# ---------------------------------------------------------------------- #
# Helpers shared by the file kinds
# ---------------------------------------------------------------------- #
def parse_label(value):
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


def captions_from_lines(data, name, problem):
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


def check_options(kind, options, allowed):
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"Unknown option(s) {unknown} for a {kind} source; valid options: "
            f"{sorted(allowed)}."
        )
