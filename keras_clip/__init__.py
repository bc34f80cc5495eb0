"""keras_clip: CLIP-style contrastive language-image training for Keras 3.

`import keras_clip` registers every serializable class a saved run can hold
(models, losses, tokenizers) and the checkpoint importers (`pretrained`), so
`keras_clip.CLIP.from_preset(RUN_DIR)` and
`keras.saving.load_model(RUN_DIR + "/model.keras")` need no other import, and
`keras_clip.CLIP.from_preset(CHECKPOINT)` reads pretrained weights.

The `keras-clip` command sets `KERAS_CLIP_LAZY_IMPORT=1` so that `--help`
imports no backend: the public names are then imported on first use, and
every loading path calls `register_all()` itself.
"""

import importlib
import os

from keras_clip.utils.host_memory import keep_step_buffers

__version__ = "0.1.0"

# Before the backend starts its threads (see keep_step_buffers; JAX and
# TensorFlow on Linux only; KERAS_CLIP_HOST_ALLOCATOR=system opts out).
keep_step_buffers()

_PUBLIC = {
    "CLIP": "keras_clip.models",
    "EndTokenPooling": "keras_clip.models",
    "LogitScale": "keras_clip.models",
    "ProjectionHead": "keras_clip.models",
    "build_clip": "keras_clip.models.builder",
    "CaptionTokenizer": "keras_clip.tokenizers",
    "CLIPTokenizer": "keras_clip.tokenizers",
    "list_presets": "keras_clip.config",
    "load_config": "keras_clip.config",
}
_SUBPACKAGES = ("config", "data", "eval", "export", "losses", "models", "pretrained", "tokenizers", "train", "utils")
# Together these register every serializable class a saved run can hold, and
# (pretrained) the checkpoint loader `CLIP.from_preset` uses.
_REGISTERING = ("keras_clip.losses", "keras_clip.tokenizers", "keras_clip.models", "keras_clip.pretrained")


def register_all():
    """Imports the modules whose classes a saved run can hold, and the
    checkpoint importers (idempotent)."""
    for module in _REGISTERING:
        importlib.import_module(module)


def __getattr__(name):
    if name in _PUBLIC:
        register_all()
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_clip.{name}")
    raise AttributeError(f"module 'keras_clip' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC) + list(_SUBPACKAGES))


__all__ = sorted(_PUBLIC)

if os.environ.get("KERAS_CLIP_LAZY_IMPORT") != "1":
    register_all()
    for _name in _PUBLIC:
        __getattr__(_name)
