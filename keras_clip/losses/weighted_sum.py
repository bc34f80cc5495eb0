"""`WeightedSum`: a weighted combination of several contrastive losses."""

import keras

from keras_clip.losses.base import ContrastiveLoss
from keras_clip.losses.objectives import single


@keras.saving.register_keras_serializable(package="keras_clip")
class WeightedSum(ContrastiveLoss):
    """Weighted sum of losses that all read the same CLIP output dict.

        loss = sum_k weights[k] * losses[k](y_true, y_pred)

    For example CLIP's InfoNCE plus a SimCLR term on a second image view
    (SLIP, Mu et al. 2021, arXiv:2112.12750), or InfoNCE plus FILIP.

    Args:
        losses: list of `keras.losses.Loss` instances (normally
            `ContrastiveLoss` subclasses), or identifiers accepted by
            `keras_clip.losses.get` (a name such as "siglip", or a dict).
        weights: list of floats, one per loss. Defaults to all 1.0.
        name: optional name.

    Example:

    >>> import numpy as np
    >>> from keras_clip.losses import InfoNCE, NTXent
    >>> e = np.eye(4, dtype="float32")
    >>> y_pred = {"image_embeddings": e, "text_embeddings": e,
    ...           "image_views": e, "logit_scale": 1.0}
    >>> loss = WeightedSum([InfoNCE(), NTXent(temperature=0.5)], [1.0, 0.5])
    >>> print(f"{float(loss(None, y_pred)):.4f}")  # 0.7437 + 0.5 * 0.5944
    1.0409
    """

    def __init__(self, losses, weights=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(losses, (str, dict, keras.losses.Loss)):
            losses = [losses]
        losses = list(losses)
        if not losses:
            raise ValueError(
                "WeightedSum needs at least one loss; received losses=[]."
            )
        self.losses = [single(loss) for loss in losses]
        if weights is None:
            weights = [1.0] * len(self.losses)
        weights = [float(w) for w in weights]
        if len(weights) != len(self.losses):
            raise ValueError(
                f"WeightedSum received {len(self.losses)} losses but "
                f"{len(weights)} weights ({weights}); pass one weight per "
                "loss."
            )
        self.weights = weights

    def _any_needs(self, what):
        return any(getattr(loss, what, False) for loss in self.losses)

    @property
    def needs_tokens(self):
        return self._any_needs("needs_tokens")

    @property
    def needs_labels(self):
        return self._any_needs("needs_labels")

    @property
    def needs_image_views(self):
        return self._any_needs("needs_image_views")

    def call(self, y_true, y_pred):
        total = None
        for loss, weight in zip(self.losses, self.weights):
            term = weight * loss(y_true, y_pred)
            total = term if total is None else total + term
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "losses": [
                    keras.saving.serialize_keras_object(loss)
                    for loss in self.losses
                ],
                "weights": list(self.weights),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        losses = [
            keras.saving.deserialize_keras_object(loss)
            for loss in config.pop("losses")
        ]
        return cls(losses=losses, **config)
