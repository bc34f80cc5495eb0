"""`get`: build a loss from a name, a config dict or a list of them."""

import keras

from keras_clip.losses.blockwise import BlockwiseInfoNCE, BlockwiseSigLIP
from keras_clip.losses.filip import FILIP
from keras_clip.losses.infonce import InfoNCE
from keras_clip.losses.nt_xent import NTXent
from keras_clip.losses.queue_infonce import QueueInfoNCE
from keras_clip.losses.siglip import SigLIP
from keras_clip.losses.supervised_contrastive import SupervisedContrastive
from keras_clip.losses.weighted_sum import WeightedSum

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


def _from_dict(config):
    config = dict(config)
    if "class_name" in config and "config" in config:  # a serialized Loss
        return keras.saving.deserialize_keras_object(config)
    if "name" not in config:
        raise ValueError(
            "A loss given as a dict needs a 'name' key, e.g. "
            "{'name': 'siglip'}; received keys "
            f"{sorted(config)}. Valid names: {', '.join(names())}."
        )
    name = config.pop("name")
    weight = config.pop("weight", None)
    loss = _build(name, config)
    if weight is not None:
        return WeightedSum([loss], [weight])
    return loss


def get(identifier):
    """Returns a loss for a name, a dict, a list of dicts, or a Loss.

    Accepted identifiers:
    - a `keras.losses.Loss` instance: returned as is;
    - a name: "infonce", "dcl" / "decoupled_infonce" (InfoNCE with
      `decoupled=True`), "supcon" / "supervised_contrastive", "filip",
      "nt_xent" / "simclr", "siglip", "queue_infonce" / "moco";
    - a dict `{"name": ..., **options}` whose options go to the constructor
      (a "weight" key wraps it in a `WeightedSum`), or a serialized loss
      (`keras.saving.serialize_keras_object` output);
    - a list of names / dicts / losses, each dict with an optional "weight"
      (default 1.0): a `WeightedSum` of them.

    Unknown names raise a `ValueError` listing the valid ones.

    Example:

    >>> get("dcl").decoupled
    True
    >>> loss = get([{"name": "infonce"},
    ...             {"name": "nt_xent", "temperature": 0.2, "weight": 0.5}])
    >>> type(loss).__name__, loss.weights
    ('WeightedSum', [1.0, 0.5])
    """
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    if isinstance(identifier, str):
        return _build(identifier, {})
    if isinstance(identifier, dict):
        return _from_dict(identifier)
    if isinstance(identifier, (list, tuple)):
        if not identifier:
            raise ValueError(
                "An empty list of losses was given; pass at least one of: "
                f"{', '.join(names())}."
            )
        losses, weights = [], []
        for item in identifier:
            weight = 1.0
            if isinstance(item, dict) and "class_name" not in item:
                item = dict(item)
                weight = item.pop("weight", 1.0)
            losses.append(get(item))
            weights.append(float(weight))
        return WeightedSum(losses, weights)
    raise ValueError(
        f"Cannot interpret {identifier!r} (type {type(identifier).__name__}) "
        f"as a loss. Valid names: {', '.join(names())}; or pass a "
        "keras.losses.Loss instance, a {'name': ..., **options} dict, or a "
        "list of such dicts."
    )
