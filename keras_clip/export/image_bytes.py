"""Moved to `keras_clip.data.decode` (one decoder module for training and serving); kept for compatibility."""
from keras_clip.data.decode import decode_bytes as decode_image, decode_images, decode_rgb  # noqa: F401
__all__ = ["decode_image", "decode_images", "decode_rgb"]
