"""keras_clip: CLIP-style contrastive language-image training for Keras 3.

The package loads lazily: `import keras_clip` imports no backend (so
`keras-clip --help` is instant and quiet). The first use of a public name
(`keras_clip.CLIP`, `keras_clip.losses`, ...) imports the library and
registers every serializable class a saved run can hold (models, losses,
tokenizers), so `keras_clip.CLIP.from_preset(RUN_DIR)` needs no other import.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "CLIP": "keras_clip.models",
    "EndTokenPooling": "keras_clip.models",
    "LogitScale": "keras_clip.models",
    "ProjectionHead": "keras_clip.models",
    "build_clip": "keras_clip.models.builder",
    "CaptionTokenizer": "keras_clip.tokenizers",
    "list_presets": "keras_clip.config",
    "load_config": "keras_clip.config",
}
_SUBPACKAGES = ("config", "data", "eval", "export", "losses", "models", "pretrained", "tokenizers", "train", "utils")
# Imported on first use: together they register every serializable class.
_REGISTERING = ("keras_clip.losses", "keras_clip.tokenizers", "keras_clip.models", "keras_clip.pretrained")


def register_all():
    """Imports the modules whose classes a saved run can hold (idempotent)."""
    for module in _REGISTERING:
        importlib.import_module(module)


def __getattr__(name):
    if name in _PUBLIC:
        register_all()
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        register_all()
        return importlib.import_module(f"keras_clip.{name}")
    raise AttributeError(f"module 'keras_clip' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC) + list(_SUBPACKAGES))


__all__ = sorted(_PUBLIC)
