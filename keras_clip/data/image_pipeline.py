"""tf.data pipelines over real image-caption data (manifests, folders, tar shards).

`image_text_dataset(source, tokenizer, image_size, batch_size)` yields the
input dicts `keras_clip.CLIP` trains on, on every Keras backend:
`{"images": float32 (B, H, W, 3) in [0, 255], "token_ids": int32 (B, T)}`
(plus `"labels": int32 (B,)` when the source has labels).

Pipeline (training):

    records (or interleaved tar shards -> shuffle buffer)
      -> shuffle(seed) -> zip(Dataset.random(seed))   # per-element random key
      -> parallel map: caption draw, read + fully decode + check (PIL),
                       RandomResizedCrop (TF, bicubic)
      -> filter(ok) -> batch -> tokenize -> prefetch

Decoding is done by Pillow inside a `tf.numpy_function` (Pillow releases the
GIL while it decodes, so the parallel map runs on several cores). One
decode both checks the record (a truncated or corrupt image is only found by
decoding it all) and produces the pixels, so no image is decoded twice and
every format Pillow reads is accepted: JPEG (CMYK too), PNG (grey, 16-bit,
palette, alpha), BMP, GIF (first frame), WebP, TIFF. Alpha is dropped (as
`PIL.Image.convert("RGB")` does in open_clip). For reference,
`tf.io.decode_jpeg(channels=3)` also decodes Adobe CMYK JPEGs (within a few
levels of Pillow), but it fails (and would end the epoch) on truncated or
corrupt data, hence the Pillow step.

Geometry is TensorFlow (`random_resized_crop`, `resize_center_crop`: plain
TF ops, usable in an exported graph too). Every random choice (shuffle
order, caption drawn among an image's captions, crop) is a function of
`seed` and the epoch: two datasets built with the same seed give the same
batches, and each epoch differs from the previous one. With `epoch=E` a
dataset gives epoch E's batches every time it is iterated (`keras-clip
train` builds one per epoch, so a resumed run sees exactly the batches an
uninterrupted one would, whatever the iterator did before).
"""

import concurrent.futures
import io
import math
import os

import numpy as np
import tensorflow as tf

from keras_clip.data.pipeline import check_batch_and_tokenizer
from keras_clip.data import bad_records as br
from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.sources import RecordSource, open_source

# Pillow's own decompression-bomb threshold (PIL.Image.MAX_IMAGE_PIXELS).
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_SCALE = (0.9, 1.0)  # open_clip's RandomResizedCrop scale
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
DEFAULT_SHARD_SHUFFLE_BUFFER = 1000

_EMPTY_PIXELS = np.zeros((1, 1, 3), np.uint8)


# ---------------------------------------------------------------------- #
# Decoding and checking (Python / Pillow)
# ---------------------------------------------------------------------- #
def _pil():
    """Pillow's Image module, imported on first use (an optional dependency)."""
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "Decoding image files needs Pillow: pip install pillow"
        ) from error
    return Image


def _to_rgb(image):
    """A loaded PIL image of any mode -> uint8 (H, W, 3)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if mode.startswith("I;16") or (mode == "I" and values.max() > 255):
            values = values / 257.0  # 16-bit -> 8-bit
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _decode_failure(error):
    """(reason, detail) for an exception raised by Pillow."""
    message = f"{type(error).__name__}: {error}"
    truncated = "truncat" in message.lower() or isinstance(error, EOFError)
    return (br.TRUNCATED_IMAGE if truncated else br.CORRUPT_IMAGE), message


def decode_image(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Fully decodes encoded image bytes with Pillow and checks them.

    Args:
        data: bytes, an encoded image (JPEG, PNG, BMP, GIF, WebP, ...).
        max_pixels: int. Images with more pixels (width x height) are
            refused before decoding (decompression-bomb guard).

    Returns:
        `(pixels, reason, detail)`: `pixels` a uint8 (H, W, 3) RGB array
        and `reason` None, or `pixels` None and `reason` one of
        `"empty_file"`, `"corrupt_image"`, `"truncated_image"`,
        `"too_large"` with a `detail` message.
    """
    if not data:
        return None, br.EMPTY_FILE, "0 bytes"
    Image = _pil()
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        return None, br.TOO_LARGE, f"{error} (raise PIL.Image.MAX_IMAGE_PIXELS too)"
    except Image.UnidentifiedImageError:
        return None, br.CORRUPT_IMAGE, "not a recognised image format"
    except Exception as error:  # noqa: BLE001 - any decoder failure is "corrupt"
        return (None,) + _decode_failure(error)
    with image:
        width, height = image.size
        if width * height > max_pixels:
            return (
                None,
                br.TOO_LARGE,
                f"{width}x{height} = {width * height} pixels > max_pixels={max_pixels}",
            )
        if width == 0 or height == 0:
            return None, br.CORRUPT_IMAGE, f"size {width}x{height}"
        try:
            image.load()  # the first frame of an animation
            pixels = _to_rgb(image)
        except Exception as error:  # noqa: BLE001
            return (None,) + _decode_failure(error)
    return np.ascontiguousarray(pixels), None, ""


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads and decodes an image file; like `decode_image`, plus the
    reasons `"missing_file"` and `"unreadable_file"`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None, br.MISSING_FILE, ""
    except OSError as error:
        return None, br.UNREADABLE_FILE, f"{type(error).__name__}: {error}"
    return decode_image(data, max_pixels)


# ---------------------------------------------------------------------- #
# Geometry (TensorFlow)
# ---------------------------------------------------------------------- #
def _as_size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and len(image_size) in (2, 3):
        if len(image_size) == 3 and image_size[2] != 3:
            raise ValueError(
                f"image_size {tuple(image_size)} must have 3 channels "
                "(RGB), e.g. model.image_shape."
            )
        size = tuple(int(s) for s in image_size[:2])
    else:
        raise ValueError(
            "image_size must be an int, (height, width) or (height, width, 3) "
            f"(e.g. model.image_shape); received {image_size!r}."
        )
    if min(size) < 1:
        raise ValueError(f"image_size must be positive; received {image_size!r}.")
    return size


def _resize(image, size):
    """Bicubic (antialiased, like PIL) resize, rounded to [0, 255] float32."""
    resized = tf.image.resize(
        tf.cast(image, tf.float32), size, method="bicubic", antialias=True
    )
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return tf.ensure_shape(resized, (size[0], size[1], 3))


def random_resized_crop(image, size, seed, scale=DEFAULT_SCALE, ratio=DEFAULT_RATIO):
    """CLIP's training crop (torchvision `RandomResizedCrop`, bicubic).

    Draws a crop covering `scale` of the area with aspect ratio in `ratio`
    (log-uniform), up to 10 tries; if none fits, a central crop at the
    nearest allowed ratio. The crop is resized to `size`. Stateless: the
    same `seed` gives the same crop.

    Args:
        image: uint8 or float (h, w, 3) tensor.
        size: int or (height, width) of the output.
        seed: int tensor (2,), a stateless random seed.
        scale: (min, max) fraction of the image area.
        ratio: (min, max) crop width / height.

    Returns:
        float32 (height, width, 3) in [0, 255] (rounded).
    """
    size = _as_size(size)
    attempts = 10
    shape = tf.shape(image)
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    target_area = h * w * tf.random.stateless_uniform(
        [attempts], seeds[0], scale[0], scale[1]
    )
    aspect = tf.exp(
        tf.random.stateless_uniform(
            [attempts], seeds[1], math.log(ratio[0]), math.log(ratio[1])
        )
    )
    crop_w = tf.round(tf.sqrt(target_area * aspect))  # (attempts,)
    crop_h = tf.round(tf.sqrt(target_area / aspect))
    valid = (crop_w > 0) & (crop_h > 0) & (crop_w <= w) & (crop_h <= h)
    found = tf.reduce_any(valid)
    first = tf.argmax(tf.cast(valid, tf.int32))  # first valid try
    # Fallback: whole image, or a central crop at the closest allowed ratio.
    in_ratio = w / h
    fallback_w = tf.where(in_ratio > ratio[1], tf.round(h * ratio[1]), w)
    fallback_h = tf.where(in_ratio < ratio[0], tf.round(w / ratio[0]), h)
    crop_w = tf.where(found, crop_w[first], fallback_w)
    crop_h = tf.where(found, crop_h[first], fallback_h)
    offsets = tf.random.stateless_uniform([2], seeds[2])
    top = tf.where(found, tf.floor(offsets[0] * (h - crop_h + 1)), tf.floor((h - crop_h) / 2))
    left = tf.where(found, tf.floor(offsets[1] * (w - crop_w + 1)), tf.floor((w - crop_w) / 2))
    top = tf.cast(tf.minimum(top, h - crop_h), tf.int32)
    left = tf.cast(tf.minimum(left, w - crop_w), tf.int32)
    crop = image[top : top + tf.cast(crop_h, tf.int32), left : left + tf.cast(crop_w, tf.int32)]
    return _resize(crop, size)


def resize_center_crop(image, size):
    """CLIP's evaluation preprocessing: resize (bicubic) then centre crop.

    The image is scaled so that it covers `size` (for a square size: the
    shorter side becomes `size`, the longer one `int(size * long / short)`,
    as torchvision's `Resize(size)`), then the centre `size` is cut out
    (offsets rounded like torchvision's `CenterCrop`).

    Args:
        image: uint8 or float (h, w, 3) tensor.
        size: int or (height, width).

    Returns:
        float32 (height, width, 3) in [0, 255] (rounded).
    """
    out_h, out_w = _as_size(size)
    shape = tf.cast(tf.shape(image), tf.int64)
    h, w = shape[0], shape[1]
    target_h = tf.constant(out_h, tf.int64)
    target_w = tf.constant(out_w, tf.int64)
    height_binds = target_h * w >= target_w * h  # out_h / h >= out_w / w
    new_h = tf.where(height_binds, target_h, tf.maximum(target_h, h * target_w // w))
    new_w = tf.where(height_binds, tf.maximum(target_w, w * target_h // h), target_w)
    resized = tf.image.resize(
        tf.cast(image, tf.float32),
        tf.cast(tf.stack([new_h, new_w]), tf.int32),
        method="bicubic",
        antialias=True,
    )
    top = tf.cast(tf.round(tf.cast(new_h - out_h, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_w - out_w, tf.float32) / 2.0), tf.int32)
    crop = resized[top : top + out_h, left : left + out_w]
    crop = tf.clip_by_value(tf.round(crop), 0.0, 255.0)
    return tf.ensure_shape(crop, (out_h, out_w, 3))


# ---------------------------------------------------------------------- #
# Unbatched stream of decoded, preprocessed examples
# ---------------------------------------------------------------------- #
def _loader(kind, report, strict, max_pixels):
    """The numpy_function body: (path) or (name, bytes) -> (ok, pixels)."""

    def finish(pixels, reason, detail, name):
        if reason is not None:
            br.report_bad_record(report, strict, reason, name, detail)
            return np.bool_(False), _EMPTY_PIXELS
        return np.bool_(True), pixels

    if kind == "path":

        def load(path):
            path = os.fsdecode(path)
            pixels, reason, detail = read_image(path, max_pixels)
            return finish(pixels, reason, detail, path)

    else:

        def load(name, data):
            pixels, reason, detail = decode_image(data, max_pixels)
            return finish(pixels, reason, detail, name.decode("utf-8", "replace"))

    return load


def epoch_seed(seed, epoch):
    """The seed of epoch `epoch` of a run seeded with `seed`: a 32-bit int,
    a pure function of the two (NumPy's `SeedSequence`)."""
    for name, value in (("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0 to key an epoch's data; received {name}={value!r}.")
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint32)[0])


def _record_elements(source, training, seed, shuffle_buffer, reshuffle):
    records = source.records
    captions = [c.encode("utf-8") for r in records for c in r.captions]
    lengths = [len(r.captions) for r in records]
    columns = {
        "path": np.asarray([os.fsencode(r.path) for r in records], dtype=object),
        "captions": tf.RaggedTensor.from_row_lengths(
            tf.constant(captions, tf.string), tf.constant(lengths, tf.int64)
        ),
        "label": np.asarray(
            [r.label if source.has_labels else -1 for r in records], np.int32
        ),
    }
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        dataset = dataset.shuffle(
            shuffle_buffer or len(records), seed=seed, reshuffle_each_iteration=reshuffle
        )
    return dataset


def _shard_elements(source, training, seed, shuffle_buffer, cycle_length, report, strict, reshuffle):
    signature = {
        "name": tf.TensorSpec([], tf.string),
        "image": tf.TensorSpec([], tf.string),
        "captions": tf.TensorSpec([None], tf.string),
        "label": tf.TensorSpec([], tf.int32),
    }

    def generate(shard):
        for sample in source.iter_shard(shard, report=report, strict=strict):
            yield {
                "name": sample.name.encode("utf-8", "surrogateescape"),
                "image": sample.image,
                "captions": np.asarray(
                    [c.encode("utf-8") for c in sample.captions], dtype=object
                ),
                "label": np.int32(-1 if sample.label is None else sample.label),
            }

    shards = tf.data.Dataset.from_tensor_slices(
        np.asarray([os.fsencode(s) for s in source.shards], dtype=object)
    )
    if training:
        shards = shards.shuffle(
            len(source.shards), seed=seed, reshuffle_each_iteration=reshuffle
        )
    cycle = max(1, min(int(cycle_length), len(source.shards)))
    samples = shards.interleave(
        lambda shard: tf.data.Dataset.from_generator(
            generate, output_signature=signature, args=(shard,)
        ),
        cycle_length=cycle,
        block_length=1,
        num_parallel_calls=cycle,
        deterministic=True,
    )
    if training:
        samples = samples.shuffle(
            shuffle_buffer or DEFAULT_SHARD_SHUFFLE_BUFFER,
            seed=seed,
            reshuffle_each_iteration=reshuffle,
        )
    return samples


def _example_stream(
    source,
    image_size,
    training,
    seed,
    strict,
    max_pixels,
    shuffle_buffer,
    report,
    cycle_length,
    scale,
    ratio,
    num_parallel_calls,
    reshuffle=True,
):
    """Unbatched dataset of {"image", "caption", "captions", "label"}.

    `reshuffle`: draw a new order, captions and crops at each iteration
    (False: every iteration repeats the first one)."""
    size = _as_size(image_size)
    if isinstance(source, RecordSource):
        elements = _record_elements(source, training, seed, shuffle_buffer, reshuffle)
        load = _loader("path", report, strict, max_pixels)
        load_args = lambda e: [e["path"]]  # noqa: E731
    else:
        elements = _shard_elements(
            source, training, seed, shuffle_buffer, cycle_length, report, strict, reshuffle
        )
        load = _loader("bytes", report, strict, max_pixels)
        load_args = lambda e: [e["name"], e["image"]]  # noqa: E731

    if training:
        # One random int64 per element, different every epoch (iteration)
        # unless `reshuffle` is off, reproducible under `seed`: the key of all
        # stateless draws below.
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle)
    else:
        keys = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
    elements = tf.data.Dataset.zip((elements, keys))
    seed_value = 0 if seed is None else int(seed)

    @tf.autograph.experimental.do_not_convert  # plain TF ops: faster tracing
    def prepare(element, key):
        stateless_seed = tf.stack([key, tf.constant(seed_value, tf.int64)])
        seeds = tf.random.experimental.stateless_split(stateless_seed, 2)
        captions = element["captions"]  # (k,)
        if training:
            pick = tf.random.stateless_uniform(
                [], seeds[0], minval=0, maxval=tf.shape(captions)[0], dtype=tf.int32
            )
        else:
            pick = 0
        ok, pixels = tf.numpy_function(
            load, load_args(element), [tf.bool, tf.uint8], stateful=True
        )
        ok = tf.ensure_shape(ok, [])
        pixels = tf.ensure_shape(pixels, [None, None, 3])
        if training:
            image = random_resized_crop(pixels, size, seeds[1], scale, ratio)
        else:
            image = resize_center_crop(pixels, size)
        return {
            "ok": ok,
            "image": image,  # (H, W, 3) float32
            "caption": captions[pick],
            "captions": captions,
            "label": element["label"],
        }

    stream = elements.map(
        prepare, num_parallel_calls=num_parallel_calls, deterministic=True
    )
    stream = stream.filter(lambda e: e["ok"])
    return stream.map(lambda e: {k: v for k, v in e.items() if k != "ok"})


# ---------------------------------------------------------------------- #
# Validation of a whole source (strict mode, CLI checks)
# ---------------------------------------------------------------------- #
def _check_records(source, max_pixels, report, strict, num_threads):
    def check(record):
        _, reason, detail = read_image(record.path, max_pixels)
        return record.path, reason, detail

    workers = num_threads or min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        # map() yields in record order: strict raises at the first bad one.
        for path, reason, detail in pool.map(check, source.records, chunksize=16):
            if reason is not None:
                br.report_bad_record(report, strict, reason, path, detail)


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
    if isinstance(source, RecordSource):
        for problem in source.problems:
            report.add(*problem)
        _check_records(source, max_pixels, report, strict, num_threads)
    else:
        for sample in source.iter_samples(report=report, strict=strict):
            _, reason, detail = decode_image(sample.image, max_pixels)
            if reason is not None:
                br.report_bad_record(report, strict, reason, sample.name, detail)
    return report


# ---------------------------------------------------------------------- #
# Public entry points
# ---------------------------------------------------------------------- #
def _check_common(batch_size, tokenizer, max_pixels):
    check_batch_and_tokenizer(batch_size, tokenizer)
    if not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int; received {max_pixels!r}.")


def _prepare_source(source, strict, report, max_pixels, source_options):
    source = open_source(source, strict=strict, **source_options)
    if isinstance(source, RecordSource):
        for problem in source.problems:
            report.add(*problem)
        if strict and getattr(source, "_strict_checked", None) != max_pixels:
            # Raise BadRecordError here, in record order, rather than from
            # inside tf.data (where it would arrive wrapped in a TF error).
            # Once per source: a run that builds a dataset per epoch does not
            # decode everything twice each epoch (the pipeline still raises
            # on a file that turns bad later).
            _check_records(source, max_pixels, report, strict, None)
            source._strict_checked = max_pixels
    return source


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
    **source_options,
):
    """A `tf.data.Dataset` of CLIP input batches from real image-caption data.

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
    empty or non-UTF-8 captions, ...) are skipped and counted in `report`
    (also attached to the dataset as `dataset.bad_records`), so a run never
    stops mid-epoch on one. With `strict=True` the first raises
    `BadRecordError` naming the file and the reason: for manifests and
    folders every image is decoded once here, before the dataset is
    returned; tar shards are only read while streaming, so there the error
    surfaces from the iterator as a `tf.errors.InvalidArgumentError` whose
    message holds the `BadRecordError` text (use `validate_source(...,
    strict=True)` to get the exception itself).

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
            (`"data-{000..099}.tar"`) / glob / list of shards, or a source
            returned by `open_source`.
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
    _check_common(batch_size, tokenizer, max_pixels)
    size = _as_size(image_size)
    report = BadRecordReport() if report is None else report
    if not isinstance(report, BadRecordReport):
        raise TypeError(
            f"report must be a BadRecordReport or None; received {report!r}."
        )
    source = _prepare_source(source, strict, report, max_pixels, source_options)
    has_labels = source.has_labels
    if drop_remainder is None:
        drop_remainder = bool(training)
    if (
        isinstance(source, RecordSource)
        and drop_remainder
        and not repeat
        and batch_size > len(source.records)
    ):
        raise ValueError(
            f"batch_size={batch_size} is larger than the number of images "
            f"({len(source.records)}) in {source.path!r}, so with "
            f"drop_remainder=True the dataset would be empty. Use batch_size "
            f"<= {len(source.records)}, drop_remainder=False or repeat=True."
        )

    reshuffle = True
    if epoch is not None:
        if seed is None:
            raise ValueError(
                f"epoch={epoch!r} keys the data by (seed, epoch) and needs an int "
                "seed; received seed=None. Pass seed=0 (or any int >= 0)."
            )
        seed, reshuffle = epoch_seed(seed, epoch), False
    stream = _example_stream(
        source, size, training, seed, strict, max_pixels, shuffle_buffer,
        report, cycle_length, scale, ratio, num_parallel_calls, reshuffle,
    )
    stream = stream.map(
        lambda e: {"image": e["image"], "caption": e["caption"], "label": e["label"]}
    )
    if repeat:
        stream = stream.repeat()
    batches = stream.batch(batch_size, drop_remainder=drop_remainder)

    def to_inputs(batch):
        token_ids = tokenizer(batch["caption"])  # (B, T)
        inputs = {
            "images": batch["image"],  # (B, H, W, 3) float32
            "token_ids": tf.cast(token_ids, tf.int32),  # (B, T)
        }
        if has_labels:
            inputs["labels"] = batch["label"]  # (B,)
        return inputs

    batches = batches.map(
        to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    dataset = batches.prefetch(tf.data.AUTOTUNE)
    dataset.bad_records = report
    dataset.source = source
    return dataset


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

    The images go through exactly the `training=False` preprocessing of
    `image_text_dataset` (bicubic resize of the shorter side, centre crop),
    in source order; bad records are skipped (and counted) or raise with
    `strict=True`.

    Args:
        source: see `image_text_dataset`.
        image_size: int, (height, width) or `model.image_shape`.
        max_examples: int or None. Keep the first this many (good) images.
        strict, max_pixels, report, num_parallel_calls, **source_options:
            see `image_text_dataset`.

    Returns:
        dict with
        - "images": uint8 (N, H, W, 3);
        - "captions": list of M str (all captions of the N images, image
          by image);
        - "labels": int32 (N,) or None when the source has no labels;
        - "text_to_image": int32 (M,), the image index of each caption;
        - "report": the `BadRecordReport`.
    """
    size = _as_size(image_size)
    report = BadRecordReport() if report is None else report
    source = _prepare_source(source, strict, report, max_pixels, source_options)
    # cycle_length=1: tar shards are read one after the other (source order).
    stream = _example_stream(
        source, size, False, 0, strict, max_pixels, None, report, 1,
        DEFAULT_SCALE, DEFAULT_RATIO, num_parallel_calls,
    )
    if max_examples is not None:
        stream = stream.take(int(max_examples))
    images, captions, labels, text_to_image = [], [], [], []
    for element in stream.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        index = len(images)
        images.append(element["image"].astype(np.uint8))
        for caption in element["captions"]:
            captions.append(caption.decode("utf-8"))
            text_to_image.append(index)
        labels.append(element["label"])
    if images:
        images = np.stack(images)
    else:
        images = np.zeros((0, size[0], size[1], 3), np.uint8)
    return {
        "images": images,
        "captions": captions,
        "labels": np.asarray(labels, np.int32) if source.has_labels else None,
        "text_to_image": np.asarray(text_to_image, np.int32),
        "report": report,
    }
