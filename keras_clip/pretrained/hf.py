"""Hugging Face `CLIPModel` folders (`config.json` + `model.safetensors` or `pytorch_model.bin`)."""

import json
import logging
import os

from keras_clip.pretrained.build import build_clip_for, special_token_ids
from keras_clip.pretrained.mapping import assign_openai_weights, validate_state_dict, hf_to_openai, infer_architecture
from keras_clip.pretrained.state_dict import read_safetensors, read_torch

logger = logging.getLogger("keras_clip.pretrained")

# Hugging Face activation names -> Keras ones ("gelu" is the exact, erf form in both).
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def is_hf_folder(path):
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    try:
        with open(config) as f:
            return json.load(f).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


def read_hf_weights(folder):
    """`{name: array}` of a Hugging Face folder: single-file or sharded
    (`*.index.json`), safetensors preferred over PyTorch pickles."""
    for name in _WEIGHT_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        reader = read_safetensors if ".safetensors" in name else read_torch
        if not name.endswith(".index.json"):
            return reader(path)
        with open(path) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(reader(os.path.join(folder, shard)))
        return state
    raise FileNotFoundError(
        f"No weights in Hugging Face folder {folder!r}: expected one of {_WEIGHT_FILES}."
    )


def _activation(tower, config):
    act = config.get("hidden_act", "quick_gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(
            f"{tower}_config.hidden_act={act!r} is not supported; keras_clip's towers use "
            f"{sorted(_ACTIVATIONS)}."
        )
    return _ACTIVATIONS[act]


def load_hf_checkpoint(folder, tokenizer=None):
    """A `CLIP` holding a Hugging Face `CLIPModel` saved with `save_pretrained`.

    Heads, activations, epsilons and the end token come from `config.json`;
    the rest of the architecture from the tensor shapes (and checked against it).
    """
    with open(os.path.join(folder, "config.json")) as f:
        hf_config = json.load(f)
    vision_cfg = hf_config.get("vision_config", {})
    text_cfg = hf_config.get("text_config", {})
    for tower, cfg in (("vision", vision_cfg), ("text", text_cfg)):
        eps = float(cfg.get("layer_norm_eps", 1e-5))
        if abs(eps - 1e-5) > 1e-12:
            raise ValueError(
                f"{tower}_config.layer_norm_eps={eps} in {folder!r}; keras-hub's encoder "
                "layers use 1e-5 only."
            )
    state = hf_to_openai(read_hf_weights(folder))
    config = infer_architecture(
        state,
        vision_heads=vision_cfg.get("num_attention_heads", 12),
        text_heads=text_cfg.get("num_attention_heads", 8),
    )
    config["image_encoder"]["activation"] = _activation("vision", vision_cfg)
    config["text_encoder"]["activation"] = _activation("text", text_cfg)
    for key, expected in (
        (("vision_config", "hidden_size"), config["image_encoder"]["width"]),
        (("vision_config", "patch_size"), config["image_encoder"]["patch_size"]),
        (("vision_config", "image_size"), config["image_encoder"]["image_size"]),
        (("text_config", "hidden_size"), config["text_encoder"]["width"]),
        (("projection_dim",), config["embed_dim"]),
    ):
        value = hf_config.get(key[0]) if len(key) == 1 else hf_config.get(key[0], {}).get(key[1])
        if value is not None and int(value) != expected:
            raise ValueError(
                f"{'.'.join(key)}={value} in {folder!r}/config.json but the weights say {expected}."
            )
    # eos_token_id == 2 marks configs from before transformers' PR #24773,
    # which pool at argmax(token_ids): the vocabulary's last id.
    eos = text_cfg.get("eos_token_id")
    end = None if eos in (None, 2) else int(eos)
    config.update(special_token_ids(config["text_encoder"]["vocabulary_size"], end))
    logger.info(
        "Importing Hugging Face CLIPModel %s (activations: vision %s, text %s).",
        folder, config["image_encoder"]["activation"], config["text_encoder"]["activation"],
    )
    validate_state_dict(state, config)  # before building: errors come fast
    model = build_clip_for(config, final_layer_norm_epsilon=1e-5, tokenizer=tokenizer)
    assign_openai_weights(model, state, config)
    return model, config
