"""Compatibility alias: `random_view` now lives in `keras_clip.data.transforms`."""

from keras_clip.data.transforms import random_view  # noqa: F401
