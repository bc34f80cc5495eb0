"""OpenAI / open_clip state dicts: `.pt` / `.pth` / `.bin` (PyTorch) and `.safetensors`."""

import logging
import os
import warnings

import numpy as np

from keras_clip.pretrained.build import build_clip_for, special_token_ids
from keras_clip.pretrained.mapping import assign_openai_weights, validate_state_dict, infer_architecture

logger = logging.getLogger("keras_clip.pretrained")

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)
# Wrappers training scripts add around the names (DDP, torch.compile).
_PREFIXES = ("module.", "_orig_mod.")


def _check_file(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint not found: {path!r}.")
    if not os.path.isfile(path):
        raise IsADirectoryError(f"Checkpoint {path!r} is not a file.")


def read_safetensors(path):
    """`{name: float32 array}` of a `.safetensors` file."""
    _check_file(path)
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"Cannot read {path!r} as safetensors: {error}") from error
    return {k: np.asarray(v, dtype="float32") if v.dtype.kind == "f" else v for k, v in tensors.items()}


def read_torch(path):
    """`{name: float32 array}` of a PyTorch checkpoint (needs `torch`).

    Tries `torch.load(..., weights_only=True)` first (plain state dicts and
    open_clip's `{"state_dict": ...}` training checkpoints), then
    `torch.jit.load(...).state_dict()` for OpenAI's TorchScript archives.
    """
    _check_file(path)
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading {path!r} needs PyTorch (pip install torch); a .safetensors copy of "
            "the checkpoint does not."
        ) from error
    try:
        with warnings.catch_warnings():  # TorchScript archives: handled below
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:
        try:
            obj = torch.jit.load(path, map_location="cpu").state_dict()
        except Exception as second:
            raise ValueError(
                f"Cannot read {path!r} as a PyTorch state dict (torch.load with "
                f"weights_only=True: {first}) nor as a TorchScript archive "
                f"(torch.jit.load: {second})."
            ) from second
        logger.info("Read %s as a TorchScript archive.", path)
    if isinstance(obj, torch.nn.Module) or hasattr(obj, "_c"):  # torch.load may hand back a ScriptModule
        obj = obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(
            f"{path!r} holds a {type(obj).__name__}, not a state dict (a dict of tensors)."
        )
    out = {}
    for key, value in obj.items():
        if not hasattr(value, "detach"):
            raise ValueError(f"{path!r}: entry {key!r} is a {type(value).__name__}, not a tensor.")
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        out[key] = value.numpy()
    return out


def strip_prefixes(state_dict):
    """Drops `module.` (DDP) and `_orig_mod.` (torch.compile) from every name."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def read_state_dict(path):
    """`{name: array}` of a `.pt` / `.pth` / `.bin` / `.ckpt` or `.safetensors` file."""
    lower = str(path).lower()
    if lower.endswith(SAFETENSORS_SUFFIXES):
        state = read_safetensors(path)
    elif lower.endswith(TORCH_SUFFIXES):
        state = read_torch(path)
    else:
        _check_file(path)
        raise ValueError(
            f"Cannot tell the format of {path!r} from its name; expected one of "
            f"{TORCH_SUFFIXES + SAFETENSORS_SUFFIXES}, a Hugging Face CLIPModel folder or a "
            "keras-hub preset."
        )
    return strip_prefixes(state)


def load_state_dict_checkpoint(
    path, activation="quick_gelu", tokenizer=None, vision_heads=None, text_heads=None, end_token_id=None
):
    """A `CLIP` holding an OpenAI / open_clip ViT state dict (architecture read from shapes)."""
    state = read_state_dict(path)
    config = infer_architecture(state, activation, vision_heads=vision_heads, text_heads=text_heads)
    config.update(special_token_ids(config["text_encoder"]["vocabulary_size"], end_token_id))
    logger.info("Importing %s with activation=%r (OpenAI's weights: quick_gelu).", path, activation)
    validate_state_dict(state, config)  # before building: errors come fast
    model = build_clip_for(config, final_layer_norm_epsilon=1e-5, tokenizer=tokenizer)
    assign_openai_weights(model, state, config)
    return model, config
