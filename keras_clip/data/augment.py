"""Image augmentation inside tf.data (the same ops on every Keras backend)."""

import tensorflow as tf


def random_view(images, seed, scale=(0.5, 1.0), flip=True, brightness=0.1):
    """A SimCLR-style augmented view of a batch of images, in [0, 255].

    Per image: a random crop covering `scale` of the area (aspect 3/4..4/3),
    resized back to the input size; a random horizontal flip; a small random
    brightness change. Hue is never changed: on data whose captions name
    colours (the shapes set) a hue jitter would make the view contradict
    its caption. Stateless ops keyed by `seed` (a (2,) int tensor), so the
    pipeline stays deterministic.

    Args:
        images: float32 (B, H, W, 3) in [0, 255].
        seed: (2,) int32/int64 tensor.

    Reference: Chen et al., SimCLR, arXiv:2002.05709, appendix A.
    """
    size = tf.shape(images)[1:3]
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    area = tf.random.stateless_uniform([batch], seeds[0], scale[0], scale[1])
    log_ratio = tf.random.stateless_uniform([batch], seeds[1], tf.math.log(3 / 4), tf.math.log(4 / 3))
    ratio = tf.exp(log_ratio)
    h = tf.clip_by_value(tf.sqrt(area / ratio), 0.1, 1.0)
    w = tf.clip_by_value(tf.sqrt(area * ratio), 0.1, 1.0)
    offsets = tf.random.stateless_uniform([batch, 2], seeds[2], 0.0, 1.0)
    y1 = offsets[:, 0] * (1.0 - h)
    x1 = offsets[:, 1] * (1.0 - w)
    boxes = tf.stack([y1, x1, y1 + h, x1 + w], axis=1)  # (B, 4) normalised
    views = tf.image.crop_and_resize(images, boxes, tf.range(batch), size)  # (B, H, W, 3)
    if flip:
        coin = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[3]) < 0.5
        views = tf.where(coin, tf.reverse(views, axis=[2]), views)
    if brightness:
        delta = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[3] + 1, -brightness, brightness)
        views = views * (1.0 + delta)
    return tf.clip_by_value(views, 0.0, 255.0)
