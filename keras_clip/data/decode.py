"""Encoded image bytes -> RGB pixels: the Pillow decoder and the TensorFlow one.

Two decoders, side by side, so that training and serving read images the
same way:

- `decode_image` / `read_image` (Pillow, Python): the data pipeline's. One
  full decode both checks a record (a truncated or corrupt image is only
  found by decoding it all) and produces the pixels; every format Pillow
  reads is accepted: JPEG (CMYK too), PNG (grey, 16-bit, palette, alpha),
  BMP, GIF (first frame), WebP, TIFF. Alpha is dropped (as
  `PIL.Image.convert("RGB")` does in open_clip). Problems come back as a
  bad-record reason instead of an exception. It runs inside a
  `tf.numpy_function` (Pillow releases the GIL while decoding).
- `decode_rgb` / `decode_bytes` / `decode_images` (TensorFlow ops): the
  exported SavedModel's (`encode_image_bytes`, `zero_shot`), so a server
  can send JPEG / PNG / GIF / BMP files as they are. JPEG goes through
  `tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")`, which gives the same
  pixels as Pillow; the geometry is the evaluation preprocessing
  (`keras_clip.data.transforms.resize_center_crop`), so a served model sees
  what evaluation saw.
"""

import io

import numpy as np
import tensorflow as tf

from keras_clip.data import bad_records as br
from keras_clip.data.transforms import resize_center_crop

# Pillow's own decompression-bomb threshold (PIL.Image.MAX_IMAGE_PIXELS).
DEFAULT_MAX_PIXELS = 89_478_485


# ---------------------------------------------------------------------- #
# Pillow (training and evaluation data)
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
# TensorFlow ops (inside an exported SavedModel)
# ---------------------------------------------------------------------- #
def decode_rgb(image_bytes):
    """One encoded image (scalar tf.string) -> `(h, w, 3)` uint8.

    JPEG goes through `tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")`,
    which gives the same pixels as Pillow (`decode_image` above); PNG, GIF
    (first frame) and BMP through `tf.io.decode_image`. Grey images are
    repeated to 3 channels, palettes expanded, alpha dropped (as
    `PIL.Image.convert("RGB")`); 16-bit PNGs are scaled to 8 bits.
    """
    image = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False),
    )
    return tf.ensure_shape(image, [None, None, 3])  # (h, w, 3)


def decode_bytes(image_bytes, size):
    """One encoded image -> `(H, W, 3)` float32 in `[0, 255]` (`decode_rgb`,
    then `resize_center_crop` to `size = (H, W)`). Exported by
    `keras_clip.export` as `decode_image`."""
    return resize_center_crop(decode_rgb(image_bytes), (int(size[0]), int(size[1])))


def decode_images(image_bytes, size):
    """A batch `(B,)` of encoded images -> `(B, H, W, 3)` float32 (B may be 0)."""
    height, width = int(size[0]), int(size[1])
    return tf.map_fn(
        lambda b: decode_bytes(b, (height, width)),
        image_bytes,
        fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
    )  # (B, H, W, 3)
