"""Image geometry in TensorFlow ops: CLIP's training crop and evaluation resize.

Plain TF ops, so they run inside tf.data on every Keras backend and inside an
exported SavedModel (`keras_clip.export` serves `resize_center_crop`).

There is one RandomResizedCrop, `random_resized_crop`, with two uses:
- one image (h, w, 3): torchvision's algorithm (10 tries, central fallback),
  an integer pixel crop resized bicubic with antialiasing and rounded: the
  training crop of file sources;
- a batch (B, h, w, 3) with `attempts=None`: one draw per image, the crop's
  sides clipped to [0.1, 1] of the image, resampled bilinearly by
  `tf.image.crop_and_resize`: the cheap augmented view `random_view` makes
  for SLIP's image-image term.
Both draw the crop's area fraction, aspect ratio and position the same way
(`_draw_crops`).
"""

import math

import numpy as np
import tensorflow as tf

DEFAULT_SCALE = (0.9, 1.0)  # open_clip's RandomResizedCrop scale
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def as_size(image_size):
    """int, (h, w) or (h, w, 3) -> (h, w); errors name the received value."""
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


def _draw_crops(seed, count, scale, log_ratio, num_offsets):
    """The random part of a RandomResizedCrop, stateless under `seed`.

    Returns (area fraction (count,), aspect w/h (count,), offsets in [0, 1)
    (num_offsets...) as given, the 4th split seed)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    area = tf.random.stateless_uniform([count], seeds[0], scale[0], scale[1])
    aspect = tf.exp(
        tf.random.stateless_uniform([count], seeds[1], log_ratio[0], log_ratio[1])
    )
    offsets = tf.random.stateless_uniform(num_offsets, seeds[2])
    return area, aspect, offsets, seeds[3]


def random_resized_crop(
    images,
    size,
    seed,
    scale=DEFAULT_SCALE,
    ratio=DEFAULT_RATIO,
    attempts=10,
    min_side=0.1,
):
    """RandomResizedCrop: a crop covering `scale` of the area, aspect ratio in
    `ratio` (log-uniform), resized to `size`. Stateless: same `seed`, same crop.

    One image (rank 3, `attempts` an int): torchvision's algorithm (CLIP's
    training crop): up to `attempts` tries for a crop that fits, else a
    central crop at the nearest allowed ratio; the pixel crop is resized
    bicubic (antialiased) and rounded.

    A batch (rank 4, `attempts=None`): one draw per image; the crop's sides
    are clipped to [`min_side`, 1] of the image instead of retried, and
    `tf.image.crop_and_resize` resamples it bilinearly (not rounded). `ratio`
    may then be given as tensors (their float32 log is used).

    Args:
        images: uint8 or float (h, w, 3), or float (B, h, w, 3).
        size: int or (height, width) of the output; None (batch only): the
            input size.
        seed: int tensor (2,), a stateless random seed.
        scale: (min, max) fraction of the image area.
        ratio: (min, max) crop width / height.
        attempts: int (one image) or None (a batch).
        min_side: batch only, smallest crop side as a fraction of the image.

    Returns:
        float32 (height, width, 3) in [0, 255], or (B, height, width, 3).

    Reference: Szegedy et al., "Going deeper with convolutions" (the
    crop); torchvision.transforms.RandomResizedCrop.
    """
    if attempts is None:
        return _random_resized_crop_batch(images, size, seed, scale, ratio, min_side)
    size = as_size(size)
    shape = tf.shape(images)
    h = tf.cast(shape[0], tf.float32)
    w = tf.cast(shape[1], tf.float32)
    # math.log in float64, then float32: the file pipeline's numbers.
    fraction, aspect, offsets, _ = _draw_crops(
        seed, attempts, scale, (math.log(ratio[0]), math.log(ratio[1])), [2]
    )
    target_area = h * w * fraction
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
    top = tf.where(found, tf.floor(offsets[0] * (h - crop_h + 1)), tf.floor((h - crop_h) / 2))
    left = tf.where(found, tf.floor(offsets[1] * (w - crop_w + 1)), tf.floor((w - crop_w) / 2))
    top = tf.cast(tf.minimum(top, h - crop_h), tf.int32)
    left = tf.cast(tf.minimum(left, w - crop_w), tf.int32)
    crop = images[top : top + tf.cast(crop_h, tf.int32), left : left + tf.cast(crop_w, tf.int32)]
    return _resize(crop, size)


def _random_resized_crop_batch(images, size, seed, scale, ratio, min_side):
    batch = tf.shape(images)[0]
    out_size = tf.shape(images)[1:3] if size is None else as_size(size)
    log_ratio = (tf.math.log(ratio[0]), tf.math.log(ratio[1]))  # float32 log
    area, aspect, offsets, _ = _draw_crops(seed, batch, scale, log_ratio, [batch, 2])
    h = tf.clip_by_value(tf.sqrt(area / aspect), min_side, 1.0)  # (B,) fractions
    w = tf.clip_by_value(tf.sqrt(area * aspect), min_side, 1.0)
    y1 = offsets[:, 0] * (1.0 - h)
    x1 = offsets[:, 1] * (1.0 - w)
    boxes = tf.stack([y1, x1, y1 + h, x1 + w], axis=1)  # (B, 4) normalised
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), out_size)  # (B, H, W, 3)


def random_view(images, seed, scale=(0.5, 1.0), flip=True, brightness=0.1):
    """A SimCLR-style augmented view of a batch of images, in [0, 255].

    Per image: a random crop covering `scale` of the area (aspect 3/4..4/3),
    resized back to the input size (`random_resized_crop`, batch form); a
    random horizontal flip; a small random brightness change. Hue is never
    changed: on data whose captions name colours (the shapes set) a hue
    jitter would make the view contradict its caption. Stateless ops keyed
    by `seed` (a (2,) int tensor), so the pipeline stays deterministic.

    Args:
        images: float32 (B, H, W, 3) in [0, 255].
        seed: (2,) int32/int64 tensor.

    Reference: Chen et al., SimCLR, arXiv:2002.05709, appendix A.
    """
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    views = random_resized_crop(
        images, None, seed, scale=scale, ratio=(3 / 4, 4 / 3), attempts=None
    )  # (B, H, W, 3)
    if flip:
        coin = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[3]) < 0.5
        views = tf.where(coin, tf.reverse(views, axis=[2]), views)
    if brightness:
        delta = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[3] + 1, -brightness, brightness)
        views = views * (1.0 + delta)
    return tf.clip_by_value(views, 0.0, 255.0)


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
    out_h, out_w = as_size(size)
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
