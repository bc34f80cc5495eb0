"""Builds CLIP models from config dicts (the `model:` section of a recipe)."""

from keras_clip.models.clip import CLIP
from keras_clip.models.presets import (  # noqa: F401  (public here too)
    load_run_model,
    transformer_text_encoder,
    vit_image_encoder,
)
from keras_clip.models.presets import clip_arguments
from keras_clip.models.remat import prepare_jax_cpu_remat, set_remat


def build_clip(model_config, tokenizer=None, remat=False):
    """A `CLIP` from a `model:` config dict (merged over the defaults).

    With a tokenizer (any `keras_clip.tokenizers.Tokenizer`), the text
    vocabulary size, context length and special token ids come from it, and
    it is stored in the model. `remat=True` rematerialises the towers'
    transformer blocks in training (`keras_clip.models.remat.set_remat`).

    Example:
    ```python
    config = keras_clip.load_config("shapes")
    model = build_clip(config["model"])
    ```
    """
    if remat is True:
        prepare_jax_cpu_remat()  # before the weights start JAX's backend
    model = CLIP(**clip_arguments(model_config, tokenizer=tokenizer))
    set_remat(model, remat)
    return model


def clip_from_preset(name_or_path, **overrides):
    """See `CLIP.from_preset`."""
    return CLIP.from_preset(name_or_path, **overrides)
