"""The tf.data builder for sources of encoded images (files, tar shards).

`source_dataset(source, ...)` and `source_eval_arrays(source, ...)` are the
base implementation of `DataSource.dataset` / `DataSource.eval_arrays` for
such sources. A source supplies its elements through two hooks:

- `source.prepare(strict, report, max_pixels)`: checks made before the
  pipeline is built (problems found while reading a manifest go to the
  report; strict mode decodes every image once, in order);
- `source.elements(training, seed, reshuffle, report, strict,
  shuffle_buffer, cycle_length)`: an unbatched `tf.data.Dataset` of dicts
  `{"captions": (k,) string, "label": int32}` plus either `"path"` (an
  image file) or `"name"` and `"image"` (encoded bytes);
  `record_elements` and `shard_elements` below build the two usual ones.

Pipeline (training):

    elements (shuffled by the source) -> zip(Dataset.random(seed))
      -> parallel map: caption draw, read + fully decode + check (Pillow,
                       `keras_clip.data.decode`), RandomResizedCrop (TF,
                       `keras_clip.data.transforms`)
      -> filter(ok) -> batch -> tokenize [-> augmented view] -> prefetch

Every random choice (order, caption drawn among an image's captions, crop)
is a function of `seed` and the epoch: two datasets built with the same
seed give the same batches, and each epoch differs from the previous one.
With `epoch=E` a dataset gives epoch E's batches every time it is iterated
(`keras-clip train` builds one per epoch, so a resumed run sees exactly the
batches an uninterrupted one would, whatever the iterator did before).
"""

import concurrent.futures
import os

import numpy as np
import tensorflow as tf

from keras_clip.data import bad_records as br
from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.decode import DEFAULT_MAX_PIXELS, decode_image, read_image
from keras_clip.data.pipeline import check_batch_and_tokenizer
from keras_clip.data.transforms import (
    DEFAULT_RATIO,
    DEFAULT_SCALE,
    as_size,
    random_resized_crop,
    random_view,
    resize_center_crop,
)

DEFAULT_SHARD_SHUFFLE_BUFFER = 1000

_EMPTY_PIXELS = np.zeros((1, 1, 3), np.uint8)


def epoch_seed(seed, epoch):
    """The seed of epoch `epoch` of a run seeded with `seed`: a 32-bit int,
    a pure function of the two (NumPy's `SeedSequence`)."""
    for name, value in (("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0 to key an epoch's data; received {name}={value!r}.")
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint32)[0])


# ---------------------------------------------------------------------- #
# Elements: what a source yields before decoding
# ---------------------------------------------------------------------- #
def record_elements(records, has_labels, training, seed, shuffle_buffer, reshuffle):
    """Elements of in-memory `ImageRecord`s (image files), shuffled when training."""
    captions = [c.encode("utf-8") for r in records for c in r.captions]
    lengths = [len(r.captions) for r in records]
    columns = {
        "path": np.asarray([os.fsencode(r.path) for r in records], dtype=object),
        "captions": tf.RaggedTensor.from_row_lengths(
            tf.constant(captions, tf.string), tf.constant(lengths, tf.int64)
        ),
        "label": np.asarray([r.label if has_labels else -1 for r in records], np.int32),
    }
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        dataset = dataset.shuffle(
            shuffle_buffer or len(records), seed=seed, reshuffle_each_iteration=reshuffle
        )
    return dataset


def shard_elements(shards, iter_shard, training, seed, shuffle_buffer, cycle_length, reshuffle):
    """Elements streamed from tar shards: `iter_shard(shard)` yields `Sample`s.

    `cycle_length` shards are read at once (interleaved); when training the
    shard order is shuffled and a buffer of `shuffle_buffer` samples mixes
    them."""
    signature = {
        "name": tf.TensorSpec([], tf.string),
        "image": tf.TensorSpec([], tf.string),
        "captions": tf.TensorSpec([None], tf.string),
        "label": tf.TensorSpec([], tf.int32),
    }

    def generate(shard):
        for sample in iter_shard(shard):
            yield {
                "name": sample.name.encode("utf-8", "surrogateescape"),
                "image": sample.image,
                "captions": np.asarray([c.encode("utf-8") for c in sample.captions], dtype=object),
                "label": np.int32(-1 if sample.label is None else sample.label),
            }

    paths = tf.data.Dataset.from_tensor_slices(np.asarray([os.fsencode(s) for s in shards], dtype=object))
    if training:
        paths = paths.shuffle(len(shards), seed=seed, reshuffle_each_iteration=reshuffle)
    cycle = max(1, min(int(cycle_length), len(shards)))
    samples = paths.interleave(
        lambda shard: tf.data.Dataset.from_generator(generate, output_signature=signature, args=(shard,)),
        cycle_length=cycle,
        block_length=1,
        num_parallel_calls=cycle,
        deterministic=True,
    )
    if training:
        samples = samples.shuffle(
            shuffle_buffer or DEFAULT_SHARD_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=reshuffle
        )
    return samples


def check_records(records, max_pixels, report, strict, num_threads=None):
    """Decodes every record's image once (threads), reporting bad ones in
    record order (strict raises at the first)."""

    def check(record):
        _, reason, detail = read_image(record.path, max_pixels)
        return record.path, reason, detail

    workers = num_threads or min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for path, reason, detail in pool.map(check, records, chunksize=16):
            if reason is not None:
                br.report_bad_record(report, strict, reason, path, detail)


def check_samples(samples, max_pixels, report, strict):
    """Decodes every streamed sample's image once, reporting bad ones."""
    for sample in samples:
        _, reason, detail = decode_image(sample.image, max_pixels)
        if reason is not None:
            br.report_bad_record(report, strict, reason, sample.name, detail)


# ---------------------------------------------------------------------- #
# Unbatched stream of decoded, preprocessed examples
# ---------------------------------------------------------------------- #
def _loader(from_path, report, strict, max_pixels):
    """The numpy_function body: (path) or (name, bytes) -> (ok, pixels)."""

    def finish(pixels, reason, detail, name):
        if reason is not None:
            br.report_bad_record(report, strict, reason, name, detail)
            return np.bool_(False), _EMPTY_PIXELS
        return np.bool_(True), pixels

    if from_path:

        def load(path):
            path = os.fsdecode(path)
            return finish(*read_image(path, max_pixels), path)

        return load, lambda e: [e["path"]]

    def load(name, data):
        return finish(*decode_image(data, max_pixels), name.decode("utf-8", "replace"))

    return load, lambda e: [e["name"], e["image"]]


def example_stream(
    source, size, training, seed, strict, max_pixels, shuffle_buffer, report,
    cycle_length, scale, ratio, num_parallel_calls, reshuffle=True,
):
    """Unbatched dataset of {"image", "caption", "captions", "label"}.

    `reshuffle`: draw a new order, captions and crops at each iteration
    (False: every iteration repeats the first one)."""
    elements = source.elements(training, seed, reshuffle, report, strict, shuffle_buffer, cycle_length)
    load, load_args = _loader("path" in elements.element_spec, report, strict, max_pixels)
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
        ok, pixels = tf.numpy_function(load, load_args(element), [tf.bool, tf.uint8], stateful=True)
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

    stream = elements.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    stream = stream.filter(lambda e: e["ok"])
    return stream.map(lambda e: {k: v for k, v in e.items() if k != "ok"})


# ---------------------------------------------------------------------- #
# DataSource.dataset / DataSource.eval_arrays for streamed sources
# ---------------------------------------------------------------------- #
def check_common(batch_size, tokenizer, max_pixels):
    check_batch_and_tokenizer(batch_size, tokenizer)
    if not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int; received {max_pixels!r}.")


def _new_report(report):
    report = BadRecordReport() if report is None else report
    if not isinstance(report, BadRecordReport):
        raise TypeError(f"report must be a BadRecordReport or None; received {report!r}.")
    return report


def source_dataset(
    source,
    tokenizer,
    image_shape,
    batch_size,
    *,
    training=True,
    seed=0,
    epoch=None,
    strict=False,
    report=None,
    image_views=False,
    max_pixels=DEFAULT_MAX_PIXELS,
    shuffle_buffer=None,
    drop_remainder=None,
    repeat=False,
    cycle_length=4,
    scale=DEFAULT_SCALE,
    ratio=DEFAULT_RATIO,
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """Batches of model inputs from a streamed source; the arguments are
    those of `keras_clip.data.image_text_dataset`, plus `image_views` (also
    yield `"image_views"`, a `random_view` of each batch's images, keyed by
    the seed and the batch index). Returns the dataset with the report as
    `dataset.bad_records` and the source as `dataset.source`."""
    check_common(batch_size, tokenizer, max_pixels)
    size = as_size(image_shape)
    report = _new_report(report)
    source.prepare(strict, report, max_pixels)
    if drop_remainder is None:
        drop_remainder = bool(training)
    count = source.num_records
    if count is not None and drop_remainder and not repeat and batch_size > count:
        raise ValueError(
            f"batch_size={batch_size} is larger than the number of images "
            f"({count}) in {getattr(source, 'path', source)!r}, so with "
            f"drop_remainder=True the dataset would be empty. Use batch_size "
            f"<= {count}, drop_remainder=False or repeat=True."
        )
    reshuffle = True
    if epoch is not None:
        if seed is None:
            raise ValueError(
                f"epoch={epoch!r} keys the data by (seed, epoch) and needs an int "
                "seed; received seed=None. Pass seed=0 (or any int >= 0)."
            )
        seed, reshuffle = epoch_seed(seed, epoch), False
    stream = example_stream(
        source, size, training, seed, strict, max_pixels, shuffle_buffer,
        report, cycle_length, scale, ratio, num_parallel_calls, reshuffle,
    )
    stream = stream.map(lambda e: {"image": e["image"], "caption": e["caption"], "label": e["label"]})
    if repeat:
        stream = stream.repeat()
    batches = stream.batch(batch_size, drop_remainder=drop_remainder)
    has_labels = source.has_labels
    view_seed = 0 if seed is None else int(seed)

    def to_inputs(step, batch):
        token_ids = tokenizer(batch["caption"])  # (B, T)
        inputs = {
            "images": batch["image"],  # (B, H, W, 3) float32
            "token_ids": tf.cast(token_ids, tf.int32),  # (B, T)
        }
        if has_labels:
            inputs["labels"] = batch["label"]  # (B,)
        if image_views:
            seed_pair = tf.stack([tf.constant(view_seed, tf.int64), step])
            inputs["image_views"] = random_view(inputs["images"], seed_pair)  # (B, H, W, 3)
        return inputs

    batches = batches.enumerate().map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = batches.prefetch(tf.data.AUTOTUNE)
    dataset.bad_records = report
    dataset.source = source
    return dataset


def source_eval_arrays(
    source,
    image_shape,
    max_examples=None,
    strict=False,
    max_pixels=DEFAULT_MAX_PIXELS,
    report=None,
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """Eval-preprocessed images of a streamed source with all their
    captions, as numpy; see `keras_clip.data.load_eval_arrays`."""
    size = as_size(image_shape)
    report = _new_report(report)
    source.prepare(strict, report, max_pixels)
    # cycle_length=1: tar shards are read one after the other (source order).
    stream = example_stream(
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
    images = np.stack(images) if images else np.zeros((0, size[0], size[1], 3), np.uint8)
    return {
        "images": images,
        "captions": captions,
        "labels": np.asarray(labels, np.int32) if source.has_labels else None,
        "text_to_image": np.asarray(text_to_image, np.int32),
        "report": report,
    }
