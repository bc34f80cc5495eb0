"""From config dicts, preset names and run directories to `CLIP` arguments.

`CLIP.from_preset` and `build_clip` both go through `clip_arguments`, which
builds the two towers from a `model:` config section. This module does not
import `CLIP` itself, so that `models/clip.py` can use it.
"""

import os

import keras
import keras_hub
from keras import ops

from keras_clip.config import DEFAULTS, list_presets, load_config, merge_config, validate_config
from keras_clip.models.text_encoder import TextEncoder
from keras_clip.models.vision_encoder import VisionEncoder
import keras_clip.tokenizers  # noqa: F401  (registers the tokenizers a saved run holds)
from keras_clip.tokenizers.base import check_tokenizer


def vit_image_encoder(
    image_size, patch_size, width, layers, heads, mlp_dim, activation="quick_gelu", dtype=None, patch_dropout=0.0,
):
    """OpenAI CLIP's ViT (keras-hub's `CLIPVisionEncoder`): `(B, S, S, 3)` -> `(B, 1 + P, width)`.

    With `patch_dropout > 0`, its subclass `keras_clip.models.VisionEncoder`,
    which drops that fraction of the patch tokens in training (FLIP)."""
    if image_size % patch_size:
        raise ValueError(
            f"image_size={image_size} is not a multiple of patch_size={patch_size}; "
            "pick sizes that tile the image exactly."
        )
    cls, extra = keras_hub.models.CLIPVisionEncoder, {}
    if patch_dropout:
        cls, extra = VisionEncoder, {"patch_dropout": patch_dropout}
    return cls(
        **extra,
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


def transformer_text_encoder(
    vocabulary_size, context_length, width, layers, heads, mlp_dim, activation="quick_gelu", dtype=None,
    final_layer_norm_epsilon=None,
):
    """OpenAI CLIP's causal text transformer: `(B, T)` -> `(B, T, width)`.

    keras-hub's `CLIPTextEncoder`, or with `final_layer_norm_epsilon` (the
    1e-5 of OpenAI's, open_clip's and Hugging Face's checkpoints; keras-hub
    fixes 1e-6) its subclass `keras_clip.models.TextEncoder`."""
    cls, extra = keras_hub.models.CLIPTextEncoder, {}
    if final_layer_norm_epsilon is not None:
        cls, extra = TextEncoder, {"final_layer_norm_epsilon": final_layer_norm_epsilon}
    return cls(
        **extra,
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


def fix_position_ids(image_encoder):
    """keras-hub 0.32's `CLIPVisionEmbedding` creates its `position_ids` as
    zeros and relies on pretrained checkpoints to overwrite them with
    0..P. Randomly initialised, every patch would read position embedding 0:
    a ViT with no idea where a patch is. Set them to 0..P (a saved model's
    weights, loaded afterwards, carry the same values)."""
    embedding = getattr(image_encoder, "embedding", None)
    position_ids = getattr(embedding, "position_ids", None)
    if position_ids is None:
        return
    values = ops.convert_to_numpy(position_ids)
    if values.size > 1 and not values.any():
        position_ids.assign(ops.cast(ops.arange(values.size)[None, :], position_ids.dtype))


def clip_arguments(model_config, tokenizer=None):
    """The `CLIP(...)` keyword arguments for a `model:` config dict (merged
    over the defaults), towers built.

    With a tokenizer, the text vocabulary size, context length and special
    token ids come from it, and it is stored in the model.
    """
    validate_config(model_config, DEFAULTS["model"], ("model",))
    cfg = merge_config(DEFAULTS["model"], model_config)
    text_cfg = dict(cfg["text_encoder"])
    ids = {k: cfg[k] for k in ("end_token_id", "pad_token_id", "start_token_id")}
    if tokenizer is not None:
        check_tokenizer(tokenizer)
        text_cfg["vocabulary_size"] = int(tokenizer.vocabulary_size)
        text_cfg["context_length"] = int(tokenizer.context_length)
        ids = {
            "end_token_id": tokenizer.end_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "start_token_id": tokenizer.start_token_id,
        }
    scale = cfg["logit_scale"]
    return dict(
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


def apply_overrides(model_cfg, overrides):
    """`model_cfg` with `overrides` set. A bare key names a top-level model
    key or a key of exactly one tower; a key of both towers must be dotted
    (`image_encoder.width`)."""
    towers = ("image_encoder", "text_encoder")
    for key, value in overrides.items():
        if "." in key:
            section, sub = key.split(".", 1)
            if section not in towers or sub not in DEFAULTS["model"][section]:
                valid = [f"{t}.{k}" for t in towers for k in DEFAULTS["model"][t]]
                raise ValueError(f"Unknown model override {key!r}; dotted keys are one of {valid}.")
            model_cfg.setdefault(section, {})[sub] = value
            continue
        owners = [t for t in towers if key in DEFAULTS["model"][t]]
        if len(owners) > 1:
            raise ValueError(
                f"Override {key!r} exists in both towers; say which one: "
                + " or ".join(f"'{t}.{key}'" for t in owners)
                + " (pass it as CLIP.from_preset(name, **{'" + owners[0] + "." + key + "': ...}))."
            )
        if owners:
            model_cfg.setdefault(owners[0], {})[key] = value
        elif key in DEFAULTS["model"]:
            model_cfg[key] = value
        else:
            raise ValueError(
                f"Unknown model override {key!r}; valid keys: {sorted(DEFAULTS['model'])} and the tower keys "
                f"{sorted(set(DEFAULTS['model']['image_encoder']) | set(DEFAULTS['model']['text_encoder']))}."
            )
    return model_cfg


def clip_arguments_from_preset(name_or_path, tokenizer=None, **overrides):
    """`CLIP(...)` arguments for a preset name or YAML path, with overrides."""
    model_cfg = apply_overrides(load_config(name_or_path)["model"], overrides)
    return clip_arguments(model_cfg, tokenizer=tokenizer)


def is_run_dir(path):
    return isinstance(path, (str, os.PathLike)) and os.path.isdir(path)


# `CLIP.from_preset` on a pretrained checkpoint. The importers live in
# `keras_clip.pretrained`, a layer above this one: it registers its loader
# here when imported (`import keras_clip` imports it), so models never import it.
CHECKPOINT_OPTIONS = ("activation", "tokenizer", "vision_heads", "text_heads")
_checkpoint_loaders = []


def register_checkpoint_loader(loader):
    """Registers `loader(path, **options) -> CLIP`, what `CLIP.from_preset`
    calls for a checkpoint (`options` among `CHECKPOINT_OPTIONS`); the last
    one registered is used."""
    if loader in _checkpoint_loaders:
        _checkpoint_loaders.remove(loader)
    _checkpoint_loaders.append(loader)


def load_checkpoint_model(path, **options):
    """A `CLIP` imported from a checkpoint by the registered loader."""
    unknown = sorted(set(options) - set(CHECKPOINT_OPTIONS))
    if unknown:
        raise ValueError(
            f"CLIP.from_preset({os.fspath(path)!r}) loads a pretrained checkpoint, which takes only "
            f"{list(CHECKPOINT_OPTIONS)}; received {unknown}. Architecture overrides apply to preset "
            "names and YAML configs."
        )
    if not _checkpoint_loaders:
        raise ImportError(
            f"CLIP.from_preset({os.fspath(path)!r}) reads checkpoints through keras_clip.pretrained, "
            "which is not imported yet; `import keras_clip.pretrained` (or `import keras_clip`) first."
        )
    return _checkpoint_loaders[-1](os.fspath(path), **options)


def _keras_hub_clip_presets():
    return set(getattr(keras_hub.models.CLIPBackbone, "presets", {}) or {})


def preset_kind(source):
    """What `CLIP.from_preset(source)` loads: `"run"` (a directory with
    `model.keras` or `config.yaml`), `"checkpoint"` (an existing file other
    than YAML, another folder, a keras-hub CLIP preset name or a `://`
    handle) or `"config"` (a keras_clip preset name or YAML file). A
    path that does not exist is a FileNotFoundError naming it."""
    if not isinstance(source, (str, os.PathLike)):
        return "config"
    path = os.fspath(source)
    if os.path.isdir(path):
        has_run = any(os.path.isfile(os.path.join(path, f)) for f in ("model.keras", "config.yaml"))
        return "run" if has_run else "checkpoint"
    if os.path.isfile(path):
        return "config" if path.lower().endswith((".yaml", ".yml")) else "checkpoint"
    if path in list_presets():
        return "config"
    if "://" in path or path in _keras_hub_clip_presets():
        return "checkpoint"
    if os.sep in path or "/" in path or os.path.splitext(path)[1]:
        raise FileNotFoundError(
            f"CLIP.from_preset: {path!r} does not exist. Pass an existing checkpoint (.pt / .bin / "
            ".safetensors file, Hugging Face or keras-hub folder), a run directory, a YAML config, or a "
            f"preset name: {list_presets()} or a keras-hub CLIP preset."
        )
    return "config"  # load_config names the known presets


def load_run_model(run_dir):
    """The trained model saved in a `keras-clip train` output directory."""
    path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No model.keras in {run_dir!r}; point to a directory written by `keras-clip train`."
        )
    return keras.saving.load_model(path)
