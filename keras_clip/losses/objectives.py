"""The objective names: name -> loss class and default options (no `WeightedSum`,
which builds on this module)."""

import keras

from keras_clip.losses.blockwise import BlockwiseInfoNCE, BlockwiseSigLIP
from keras_clip.losses.filip import FILIP
from keras_clip.losses.infonce import InfoNCE
from keras_clip.losses.nt_xent import NTXent
from keras_clip.losses.queue_infonce import QueueInfoNCE
from keras_clip.losses.siglip import SigLIP
from keras_clip.losses.supervised_contrastive import SupervisedContrastive

# name -> (class, default constructor arguments). Lookup ignores case, "-"
# and "_", so "NT-Xent", "nt_xent" and "NTXent" all work.
_OBJECTIVES = {
    "infonce": (InfoNCE, {}),
    "dcl": (InfoNCE, {"decoupled": True}),
    "decoupled_infonce": (InfoNCE, {"decoupled": True}),
    "supcon": (SupervisedContrastive, {}),
    "supervised_contrastive": (SupervisedContrastive, {}),
    "filip": (FILIP, {}),
    "nt_xent": (NTXent, {}),
    "simclr": (NTXent, {}),
    "siglip": (SigLIP, {}),
    "queue_infonce": (QueueInfoNCE, {}),
    "moco": (QueueInfoNCE, {}),
    "blockwise_infonce": (BlockwiseInfoNCE, {}),
    "blockwise_siglip": (BlockwiseSigLIP, {}),
}


def _key(name):
    return name.strip().lower().replace("-", "").replace("_", "")


_LOOKUP = {_key(name): value for name, value in _OBJECTIVES.items()}


def names():
    """The objective names accepted by `get`, sorted.

    Example:

    >>> "siglip" in names()
    True
    """
    return sorted(_OBJECTIVES)


def _build(name, options):
    if not isinstance(name, str) or _key(name) not in _LOOKUP:
        raise ValueError(
            f"Unknown contrastive loss {name!r}. Valid names: "
            f"{', '.join(names())} (or a keras.losses.Loss instance, a "
            "{'name': ..., **options} dict, or a list of such dicts with "
            "optional 'weight')."
        )
    cls, defaults = _LOOKUP[_key(name)]
    try:
        return cls(**{**defaults, **options})
    except TypeError as error:
        raise ValueError(
            f"Invalid options {sorted(options)} for loss {name!r} "
            f"({cls.__name__}): {error}"
        ) from None


def single(identifier):
    """One loss from a Loss instance, a name, a serialized loss or a
    `{"name": ..., **options}` dict (no weights, no lists)."""
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    if isinstance(identifier, str):
        return _build(identifier, {})
    if isinstance(identifier, dict):
        config = dict(identifier)
        if "class_name" in config and "config" in config:  # a serialized Loss
            return keras.saving.deserialize_keras_object(config)
        if "name" not in config:
            raise ValueError(
                "A loss given as a dict needs a 'name' key, e.g. "
                "{'name': 'siglip'}; received keys "
                f"{sorted(config)}. Valid names: {', '.join(names())}."
            )
        return _build(config.pop("name"), config)
    raise ValueError(
        f"Cannot interpret {identifier!r} (type {type(identifier).__name__}) "
        f"as a loss. Valid names: {', '.join(names())}; or pass a "
        "keras.losses.Loss instance, a {'name': ..., **options} dict, or a "
        "list of such dicts."
    )
