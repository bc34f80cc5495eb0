"""`get`: build a loss from a name, a config dict or a list of them."""

import keras

from keras_clip.losses.objectives import names, single
from keras_clip.losses.weighted_sum import WeightedSum

__all__ = ["get", "names"]


def _from_dict(config):
    config = dict(config)
    weight = None if "class_name" in config else config.pop("weight", None)
    loss = single(config)
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
    if isinstance(identifier, (keras.losses.Loss, str)):
        return single(identifier)
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
    return single(identifier)  # raises, naming what it received
