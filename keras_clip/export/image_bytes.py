"""Encoded image bytes -> model-sized pixels, in TensorFlow ops (runs inside a SavedModel).

The exported `encode_image_bytes` and `zero_shot` signatures use these
functions, so a server can send JPEG / PNG / GIF / BMP files as they are.
The geometry is the evaluation preprocessing of the data pipeline
(`keras_clip.data.image_pipeline.resize_center_crop`: bicubic, antialiased,
shorter side to the model's size, centre crop, pixels rounded to integer
levels), so a served model sees what evaluation saw.
"""

import tensorflow as tf

from keras_clip.data.image_pipeline import resize_center_crop


def decode_rgb(image_bytes):
    """One encoded image (scalar tf.string) -> `(h, w, 3)` uint8.

    JPEG goes through `tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")`,
    which gives the same pixels as Pillow (the training pipeline's decoder);
    PNG, GIF (first frame) and BMP through `tf.io.decode_image`. Grey images
    are repeated to 3 channels, palettes expanded, alpha dropped (as
    `PIL.Image.convert("RGB")`); 16-bit PNGs are scaled to 8 bits.
    """
    image = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False),
    )
    return tf.ensure_shape(image, [None, None, 3])  # (h, w, 3)


def decode_image(image_bytes, size):
    """One encoded image -> `(H, W, 3)` float32 in `[0, 255]` (`decode_rgb`,
    then `resize_center_crop` to `size = (H, W)`)."""
    return resize_center_crop(decode_rgb(image_bytes), (int(size[0]), int(size[1])))


def decode_images(image_bytes, size):
    """A batch `(B,)` of encoded images -> `(B, H, W, 3)` float32 (B may be 0)."""
    height, width = int(size[0]), int(size[1])
    return tf.map_fn(
        lambda b: decode_image(b, (height, width)),
        image_bytes,
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
    )  # (B, H, W, 3)
