"""tf.data input pipeline for image-caption pairs (feeds `fit` on any backend)."""

import numpy as np
import tensorflow as tf

from keras_clip.data.transforms import random_view


def _as_caption_list(captions):
    if isinstance(captions, (str, bytes)):
        raise TypeError(
            "captions must be a list of strings, one per image; received a "
            f"single string {captions!r}."
        )
    if isinstance(captions, np.ndarray):
        captions = captions.reshape(-1).tolist()
    else:
        captions = list(captions)
    for index, caption in enumerate(captions):
        if isinstance(caption, bytes):
            continue
        if not isinstance(caption, str):
            raise TypeError(
                f"captions[{index}] must be a str; received {caption!r} of "
                f"type {type(caption).__name__}."
            )
    return captions


def check_batch_and_tokenizer(batch_size, tokenizer):
    """The checks every contrastive input pipeline makes on its arguments."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool):
        raise TypeError(
            f"batch_size must be an int; received {batch_size!r} of type "
            f"{type(batch_size).__name__}."
        )
    if batch_size < 2:
        raise ValueError(
            "a contrastive batch needs at least 2 pairs: received "
            f"batch_size={batch_size}."
        )
    if not callable(tokenizer):
        raise TypeError(
            "tokenizer must be callable on a batch of strings (e.g. a "
            f"CaptionTokenizer or model.tokenizer); received {tokenizer!r}."
        )


def make_dataset(
    images,
    captions,
    tokenizer,
    batch_size,
    labels=None,
    shuffle=True,
    seed=0,
    drop_remainder=True,
    repeat=False,
    image_views=False,
):
    """Builds a `tf.data.Dataset` of image-caption batches for CLIP training.

    Each element is an input dict only (no targets; the contrastive loss
    needs none), ready for `model.fit(dataset)` on every Keras backend:
    `{"images": float32 (B, H, W, 3) in [0, 255],
    "token_ids": int32 (B, T)}`, plus `"labels": int32 (B,)` when `labels`
    is given (for label-aware positives). Captions are tokenized inside the
    pipeline (a batched `map` after `batch`), so raw strings stay in tf.data.

    Pipeline: `from_tensor_slices -> shuffle(seed) -> repeat -> batch ->
    map(tokenize, cast) -> prefetch`. With the same `seed` the order of
    examples is identical from run to run (each epoch is reshuffled, also
    deterministically).

    Args:
        images: uint8 or float array (N, H, W, 3), values in [0, 255].
        captions: list of N str (or a numpy array of str / bytes).
        tokenizer: a callable mapping a (B,) tf.string tensor to (B, T)
            int ids inside a TF graph, e.g. `keras_clip.data.CaptionTokenizer`
            or a keras-hub tokenizer with a fixed sequence length.
        batch_size: int >= 2 (a contrastive batch needs negatives).
        labels: optional int array (N,), e.g. class ids.
        shuffle: bool. Shuffle with a full-size buffer.
        seed: int. Shuffle seed.
        drop_remainder: bool. Drop the last partial batch (keeps every
            contrastive batch the same size).
        repeat: bool. Repeat forever (then pass `steps_per_epoch` to fit).
        image_views: bool. Also yield `"image_views"`: an augmented second
            view of every image (`keras_clip.data.transforms.random_view`), for
            SimCLR's image-image term (the SLIP recipe).

    Returns:
        A `tf.data.Dataset`.

    Example:
    ```python
    data = ShapesDataset().generate("train", 1000)
    tokenizer = CaptionTokenizer.from_corpus(data["captions"])
    dataset = make_dataset(
        data["images"], data["captions"], tokenizer, batch_size=64
    )
    model.fit(dataset, epochs=1)
    ```
    """
    # --- Validate ---
    images = np.asarray(images)
    captions = _as_caption_list(captions)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            "images must have shape (N, height, width, 3) (a batch of RGB "
            f"images, channels last); received shape {images.shape}."
        )
    if not (
        np.issubdtype(images.dtype, np.integer)
        or np.issubdtype(images.dtype, np.floating)
    ):
        raise TypeError(
            "images must be a numeric array (uint8 or float in [0, 255]); "
            f"received dtype {images.dtype}."
        )
    if not captions:
        raise ValueError(
            "captions is empty (0 captions); pass one caption string per "
            "image."
        )
    num_examples = images.shape[0]
    if num_examples != len(captions):
        raise ValueError(
            f"images has {num_examples} examples but captions has "
            f"{len(captions)}; pass exactly one caption per image."
        )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (num_examples,):
            raise ValueError(
                f"labels must have shape ({num_examples},) (one per image); "
                f"received shape {labels.shape}."
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(
                "labels must be integers (class ids); received dtype "
                f"{labels.dtype}."
            )
    check_batch_and_tokenizer(batch_size, tokenizer)
    if drop_remainder and batch_size > num_examples and not repeat:
        raise ValueError(
            f"batch_size={batch_size} is larger than the number of examples "
            f"({num_examples}), so with drop_remainder=True the dataset "
            f"would be empty. Use batch_size <= {num_examples} or "
            "drop_remainder=False."
        )
    # --- Build ---
    columns = {"images": images, "captions": np.asarray(captions, dtype=object)}
    if labels is not None:
        columns["labels"] = labels.astype(np.int32)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        dataset = dataset.shuffle(
            buffer_size=num_examples, seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def to_inputs(step, batch):
        token_ids = tokenizer(batch["captions"])  # (B, T)
        inputs = {
            "images": tf.cast(batch["images"], tf.float32),  # (B, H, W, 3)
            "token_ids": tf.cast(token_ids, tf.int32),  # (B, T)
        }
        if "labels" in batch:
            inputs["labels"] = batch["labels"]  # (B,)
        if image_views:
            view_seed = tf.stack([tf.cast(seed, tf.int64), step])
            inputs["image_views"] = random_view(inputs["images"], view_seed)  # (B, H, W, 3)
        return inputs

    # Deterministic map keeps the element order fixed.
    dataset = dataset.enumerate().map(
        to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def tokenize_all(captions, tokenizer, chunk=1024):
    """int32 numpy (N, T): every caption's token ids, through the same tf.data
    map a pipeline would run (so the ids are exactly the in-pipeline ones)."""
    captions = np.asarray(_as_caption_list(captions), dtype=object)
    dataset = tf.data.Dataset.from_tensor_slices(captions).batch(chunk).map(
        lambda batch: tf.cast(tokenizer(batch), tf.int32)
    )
    return np.concatenate(list(dataset.as_numpy_iterator()), axis=0)


def pretokenized_dataset(images, token_ids, batch_size, labels=None):
    """Batches of `{"images": float32, "token_ids": int32[, "labels"]}` in the
    given order, the last partial batch dropped: what `make_dataset(...,
    shuffle=False)` yields, from ids tokenized once (`tokenize_all`), so a
    new epoch's dataset traces no tokenizer."""
    columns = {"images": np.asarray(images), "token_ids": np.asarray(token_ids, dtype=np.int32)}
    if labels is not None:
        columns["labels"] = np.asarray(labels).astype(np.int32)
    dataset = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size, drop_remainder=True)
    dataset = dataset.map(
        lambda batch: {**batch, "images": tf.cast(batch["images"], tf.float32)},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def for_one_epoch(dataset):
    """`dataset` (a `tf.data.Dataset`; anything else is returned as is) with
    tf.data's autotuning model turned off, for an epoch's dataset that `fit`
    stops reading after its known number of batches.

    `fit` drops such an iterator unexhausted when the epoch ends, and with
    the autotuning model on, deleting it waited for the model's thread: 2.5
    to 4.4 s in about one epoch of three on a busy 2-core CPU (a run's
    epochs of 50 steps took 6 s). Without the model, `AUTOTUNE` map
    parallelism is the core count and `prefetch(AUTOTUNE)` still grows its
    buffer when the consumer waits (tf.data's legacy prefetch autotuner).
    Python attributes set on `dataset` (e.g. `bad_records`) are kept.
    """
    if not isinstance(dataset, tf.data.Dataset):
        return dataset
    options = tf.data.Options()
    options.autotune.enabled = False
    out = dataset.with_options(options)
    for name, value in vars(dataset).items():
        if not name.startswith("_") and name not in vars(out):
            setattr(out, name, value)
    return out
