"""Deprecated alias of `keras_clip.train` (kept for one release).

Use `keras_clip.train.train` and `keras_clip.eval.run.evaluate_run` /
`format_metrics` instead.
"""

from keras_clip.data import image_text_dataset  # noqa: F401
from keras_clip.eval.run import evaluate_run, format_metrics  # noqa: F401
from keras_clip.train import train  # noqa: F401
from keras_clip.train.optimizer import make_optimizer, resolve_jit_compile  # noqa: F401
