"""The function API over data sources: `image_text_dataset`, `load_eval_arrays`,
`validate_source`.

Each opens its source (`keras_clip.data.sources.open_source`) and calls the
source's own method: `source.dataset`, `source.eval_arrays`,
`source.validate`. The pipeline itself is `keras_clip.data.dataset`; the
decoders `keras_clip.data.decode`; the geometry
`keras_clip.data.transforms`. The names those modules define that used to
live here are re-exported below as compatibility aliases.
"""

import tensorflow as tf

from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.sources import open_source

# Compatibility aliases (these used to be defined in this module).
from keras_clip.data.dataset import DEFAULT_SHARD_SHUFFLE_BUFFER, epoch_seed  # noqa: F401
from keras_clip.data.decode import DEFAULT_MAX_PIXELS, decode_image, read_image  # noqa: F401
from keras_clip.data.transforms import (  # noqa: F401
    DEFAULT_RATIO,
    DEFAULT_SCALE,
    random_resized_crop,
    resize_center_crop,
)


_DEFAULTS = {
    "max_pixels": DEFAULT_MAX_PIXELS, "shuffle_buffer": None, "drop_remainder": None, "repeat": False,
    "cycle_length": 4, "scale": DEFAULT_SCALE, "ratio": DEFAULT_RATIO,
    "num_parallel_calls": tf.data.AUTOTUNE, "report": None,
}


def _given(**options):
    """The options that differ from their defaults: the file pipeline's
    tuning knobs reach a source only when set (a kind without them, like
    "shapes", then refuses them by name)."""
    return {k: v for k, v in options.items() if v is not _DEFAULTS[k] and v != _DEFAULTS[k]}


def image_text_dataset(
    source,
    tokenizer,
    image_size,
    batch_size,
    training=True,
    seed=0,
    strict=False,
    max_pixels=DEFAULT_MAX_PIXELS,
    shuffle_buffer=None,
    report=None,
    drop_remainder=None,
    repeat=False,
    cycle_length=4,
    scale=DEFAULT_SCALE,
    ratio=DEFAULT_RATIO,
    num_parallel_calls=tf.data.AUTOTUNE,
    epoch=None,
    image_views=False,
    **source_options,
):
    """A `tf.data.Dataset` of CLIP input batches from real image-caption data.

    `open_source(source, strict, **source_options).dataset(...)`.

    Each element is an input dict (no targets), ready for `model.fit` on
    every Keras backend: `{"images": float32 (B, H, W, 3) in [0, 255],
    "token_ids": int32 (B, T)}`, plus `"labels": int32 (B,)` when the
    source has labels. Images are decoded in parallel (Pillow, in a
    `tf.numpy_function`), cropped with CLIP's `RandomResizedCrop` for
    training (`scale`, `ratio`) or resized (shorter side, bicubic) and
    centre-cropped for evaluation; captions are tokenized after batching.
    When an image has several captions, one is drawn per epoch (the first
    one when `training=False`).

    Bad records (missing, empty, corrupt, truncated or too large images,
    empty or non-UTF-8 captions, corrupt or truncated tar shards, ...) are
    skipped and counted in `report` (also attached to the dataset as
    `dataset.bad_records`), so a run never stops mid-epoch on one. With
    `strict=True` the first raises `BadRecordError` naming the file and the
    reason: for manifests and folders every image is decoded once here,
    before the dataset is returned; tar shards are only read while
    streaming, so there the error surfaces from the iterator as a
    `tf.errors.InvalidArgumentError` whose message holds the
    `BadRecordError` text (use `validate_source(..., strict=True)` to get
    the exception itself).

    Determinism: with the same `seed` (and TF global seed, which
    `keras.utils.set_random_seed` sets) two datasets give identical
    batches; every epoch (iteration) reshuffles and redraws crops and
    captions. With `epoch=E`, the order, caption draws and crops are those
    of epoch E, a function of `(seed, E)` (and the global seed) only, and
    every iteration repeats them: build one dataset per epoch to resume a
    run exactly where it stopped.

    Args:
        source: a `.csv` / `.tsv` / `.jsonl` manifest, an image folder with
            sidecar `.txt` captions, a tar shard / brace pattern
            (`"data-{000..099}.tar"`) / glob / list of shards, a dict spec
            with a "kind", or a source returned by `open_source`.
        tokenizer: callable mapping a (B,) tf.string tensor to (B, T) ids
            in a TF graph (`model.tokenizer`, a `CaptionTokenizer`).
        image_size: int, (height, width) or `model.image_shape`.
        batch_size: int >= 2.
        training: bool. Shuffle, random crops, random caption choice.
        seed: int (or None: not reproducible).
        strict: bool. Raise on the first bad record instead of skipping.
        max_pixels: int. Refuse images with more pixels (default: Pillow's
            decompression-bomb limit).
        shuffle_buffer: int. Default: the whole record list for manifests
            and folders; 1000 samples (encoded) for tar shards.
        report: `BadRecordReport` to fill; a new one if None.
        drop_remainder: bool. Default: `training`.
        repeat: bool. Repeat forever (pass `steps_per_epoch` to `fit`).
        cycle_length: int. Tar shards read concurrently (interleaved).
        scale: (min, max) area fraction of the training crop.
        ratio: (min, max) aspect ratio of the training crop.
        num_parallel_calls: parallelism of the decode map (AUTOTUNE).
        epoch: int >= 0 or None. Key all random choices by `(seed, epoch)`
            and repeat them at every iteration (needs an int `seed`).
            None: one dataset for all epochs, reshuffled at each iteration.
        image_views: bool. Also yield `"image_views"` (SLIP's augmented view).
        **source_options: see `open_source` (`image_column`,
            `caption_column`, `label_column`, `separator`, `root`,
            `labels`, ...).

    Returns:
        A `tf.data.Dataset`, with the report as `dataset.bad_records`.

    Example:
    ```python
    report = BadRecordReport()
    train = image_text_dataset(
        "data/train.csv", model.tokenizer, model.image_shape, 64, report=report
    )
    model.fit(train, epochs=10, callbacks=[BadRecordLogger(report)])
    ```
    """
    source = open_source(source, strict=strict, **source_options)
    options = _given(
        max_pixels=max_pixels, shuffle_buffer=shuffle_buffer, drop_remainder=drop_remainder,
        repeat=repeat, cycle_length=cycle_length, scale=scale, ratio=ratio,
        num_parallel_calls=num_parallel_calls,
    )
    return source.dataset(
        tokenizer, image_size, batch_size, training=training, seed=seed, epoch=epoch,
        strict=strict, report=report, image_views=image_views, **options,
    )


def load_eval_arrays(
    source,
    image_size,
    max_examples=None,
    strict=False,
    max_pixels=DEFAULT_MAX_PIXELS,
    report=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    **source_options,
):
    """Decoded, eval-preprocessed images with all their captions, as numpy.

    `open_source(source, strict, **source_options).eval_arrays(...)`. The
    images go through exactly the `training=False` preprocessing of
    `image_text_dataset` (bicubic resize of the shorter side, centre crop),
    in source order; bad records are skipped (and counted) or raise with
    `strict=True`.

    Args:
        source: see `image_text_dataset`.
        image_size: int, (height, width) or `model.image_shape`.
        max_examples: int or None. Keep the first this many (good) images.
        strict, max_pixels, report, num_parallel_calls, **source_options:
            see `image_text_dataset` (file sources).

    Returns:
        dict with
        - "images": uint8 (N, H, W, 3);
        - "captions": list of M str (all captions of the N images, image
          by image);
        - "labels": int32 (N,) or None when the source has no labels;
        - "text_to_image": int32 (M,), the image index of each caption;
        - "report": the `BadRecordReport`.
    """
    source = open_source(source, strict=strict, **source_options)
    options = _given(max_pixels=max_pixels, report=report, num_parallel_calls=num_parallel_calls)
    return source.eval_arrays(image_size, max_examples=max_examples, strict=strict, **options)


def validate_source(
    source,
    max_pixels=DEFAULT_MAX_PIXELS,
    report=None,
    strict=False,
    num_threads=None,
    **source_options,
):
    """Reads and decodes every record of a source once; returns a report.

    Args:
        source: anything `open_source` accepts, or an opened source.
        max_pixels: int, see `decode_image`.
        report: optional `BadRecordReport` to fill (a new one otherwise).
        strict: bool. Raise `BadRecordError` at the first bad record (in
            source order).
        num_threads: int, decoding threads (default: cores + 1, at most 8).
        **source_options: see `open_source`.

    Returns:
        The `BadRecordReport` (empty when everything is fine).
    """
    report = BadRecordReport() if report is None else report
    source = open_source(source, strict=strict, **source_options)
    return source.validate(report=report, strict=strict, max_pixels=max_pixels, num_threads=num_threads)
