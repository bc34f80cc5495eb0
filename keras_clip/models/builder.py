"""Builds CLIP models from config dicts (the `model:` section of a recipe)."""

import os

import keras
import keras_hub

from keras_clip.config import _validate, DEFAULTS, load_config, _merge
from keras_clip.models.clip import CLIP


def vit_image_encoder(image_size, patch_size, width, layers, heads, mlp_dim, activation="quick_gelu", dtype=None):
    """OpenAI CLIP's ViT (keras-hub's `CLIPVisionEncoder`): `(B, S, S, 3)` -> `(B, 1 + P, width)`."""
    if image_size % patch_size:
        raise ValueError(
            f"image_size={image_size} is not a multiple of patch_size={patch_size}; "
            "pick sizes that tile the image exactly."
        )
    return keras_hub.models.CLIPVisionEncoder(
        patch_size=patch_size,
        hidden_dim=width,
        num_layers=layers,
        num_heads=heads,
        intermediate_dim=mlp_dim,
        intermediate_activation=activation,
        image_shape=(image_size, image_size, 3),
        dtype=dtype,
        name="image_encoder",
    )


def transformer_text_encoder(vocabulary_size, context_length, width, layers, heads, mlp_dim, activation="quick_gelu", dtype=None):
    """OpenAI CLIP's causal text transformer (keras-hub's `CLIPTextEncoder`): `(B, T)` -> `(B, T, width)`."""
    return keras_hub.models.CLIPTextEncoder(
        vocabulary_size=vocabulary_size,
        embedding_dim=width,
        hidden_dim=width,
        num_layers=layers,
        num_heads=heads,
        intermediate_dim=mlp_dim,
        intermediate_activation=activation,
        max_sequence_length=context_length,
        dtype=dtype,
        name="text_encoder",
    )


def build_clip(model_config, tokenizer=None):
    """A `CLIP` from a `model:` config dict (merged over the defaults).

    With a tokenizer, the text vocabulary size, context length and special
    token ids come from it, and it is stored in the model.
    """
    _validate(model_config, DEFAULTS["model"], ("model",))
    cfg = _merge(DEFAULTS["model"], model_config)
    text_cfg = dict(cfg["text_encoder"])
    ids = {k: cfg[k] for k in ("end_token_id", "pad_token_id", "start_token_id")}
    if tokenizer is not None:
        text_cfg["vocabulary_size"] = tokenizer.vocabulary_size
        text_cfg["context_length"] = tokenizer.context_length
        ids = {
            "end_token_id": tokenizer.end_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "start_token_id": tokenizer.start_token_id,
        }
    scale = cfg["logit_scale"]
    return CLIP(
        image_encoder=vit_image_encoder(**cfg["image_encoder"], dtype=cfg["dtype"]),
        text_encoder=transformer_text_encoder(**text_cfg, dtype=cfg["dtype"]),
        embed_dim=cfg["embed_dim"],
        image_head=cfg["image_head"],
        text_head=cfg["text_head"],
        logit_scale_init=scale["init"],
        logit_scale_max=scale["max"],
        learn_logit_scale=scale["learnable"],
        logit_bias_init=scale["bias_init"],
        queue_size=cfg["queue_size"],
        momentum=cfg["momentum"],
        tokenizer=tokenizer,
        dtype=cfg["dtype"],
        **ids,
    )


def load_run_model(run_dir):
    """The trained model saved in a `keras-clip train` output directory."""
    path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No model.keras in {run_dir!r}; point to a directory written by `keras-clip train`."
        )
    return keras.saving.load_model(path)


def clip_from_preset(name_or_path, **overrides):
    """See `CLIP.from_preset`."""
    if os.path.isdir(name_or_path):
        return load_run_model(name_or_path)
    config = load_config(name_or_path)
    model_cfg = config["model"]
    text_keys = set(DEFAULTS["model"]["text_encoder"])
    image_keys = set(DEFAULTS["model"]["image_encoder"])
    for key, value in overrides.items():
        if key in text_keys:
            model_cfg["text_encoder"][key] = value
        elif key in image_keys:
            model_cfg["image_encoder"][key] = value
        elif key == "tokenizer":
            continue
        else:
            model_cfg[key] = value
    return build_clip(model_cfg, tokenizer=overrides.get("tokenizer"))
