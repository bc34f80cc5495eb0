"""`load_checkpoint`: one entry point for every supported checkpoint format."""

import logging
import os

from keras_clip.pretrained.state_dict import SAFETENSORS_SUFFIXES, TORCH_SUFFIXES

logger = logging.getLogger("keras_clip.pretrained")

ACTIVATIONS = ("quick_gelu", "gelu")


def checkpoint_format(path):
    """`"state_dict"`, `"hf"` or `"keras_hub"` for `path` (a file, a folder
    or a keras-hub preset name / handle); a clear error otherwise."""
    from keras_clip.pretrained.hf import is_hf_folder
    from keras_clip.pretrained.keras_hub_preset import is_keras_hub_folder

    path = os.fspath(path)
    if os.path.isdir(path):
        if is_hf_folder(path):
            return "hf"
        if is_keras_hub_folder(path):
            return "keras_hub"
        raise ValueError(
            f"{path!r} is a folder but neither a Hugging Face CLIPModel (config.json with "
            "model_type 'clip') nor a keras-hub CLIPBackbone preset (config.json + metadata.json)."
        )
    if os.path.isfile(path):
        return "state_dict"
    if "://" in path and not path.startswith("file://"):
        return "keras_hub"  # kaggle://..., hf://...: keras-hub downloads it
    looks_like_file = path.lower().endswith(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES)
    if os.sep in path or path.startswith(".") or looks_like_file:
        raise FileNotFoundError(f"Checkpoint not found: {path!r}.")
    return "keras_hub"  # a preset name such as "clip_vit_base_patch32"


def load_checkpoint(
    path,
    activation="quick_gelu",
    tokenizer=None,
    vision_heads=None,
    text_heads=None,
    return_config=False,
):
    """Imports pretrained CLIP weights into a `keras_clip.CLIP`.

    Formats (told apart by `path`):
    - an OpenAI / open_clip ViT state dict: `.pt`, `.pth`, `.bin`, `.ckpt`
      (read with `torch.load(weights_only=True)`, or `torch.jit.load` for
      OpenAI's TorchScript archives; needs torch) or `.safetensors` (no torch).
      The architecture is read from tensor shapes as OpenAI's `build_model`
      does; heads are `width // 64` unless `vision_heads` / `text_heads` say;
    - a Hugging Face `CLIPModel` folder (`config.json` + `model.safetensors`
      or `pytorch_model.bin`, possibly sharded), as `save_pretrained` writes;
    - a keras-hub `CLIPBackbone` preset: a folder written by
      `save_to_preset`, or a name or handle keras-hub resolves itself
      (`"clip_vit_base_patch32"`, `"kaggle://keras/clip/keras/..."`; downloads).

    The imported model takes pixels in `[0, 255]` (it applies OpenAI's mean and
    std itself) and token ids of OpenAI's BPE tokenizer, pooled at the end
    token (the vocabulary's last id, 49407).

    Args:
        path: str or path. File, folder, or keras-hub preset name / handle.
        activation: `"quick_gelu"` (default; OpenAI's weights and open_clip's
            `*-quickgelu` models) or `"gelu"` (most LAION / open_clip
            weights). Used for state dicts, which do not record it; Hugging Face
            and keras-hub checkpoints use the activation in their config. The
            value used is logged (logger `keras_clip.pretrained`) and returned
            with `return_config=True`.
        tokenizer: optional tokenizer stored in the model (its vocabulary size
            and context length are checked against the checkpoint), or
            `"auto"`: OpenAI's BPE `CLIPTokenizer` at the checkpoint's context
            length when the vocabulary is OpenAI's (49,408 ids), else none.
        vision_heads, text_heads: optional ints: attention heads of a state
            dict's towers when not `width // 64`.
        return_config: bool. Also return the `model:` config dict of the
            imported architecture (with both activations).

    Returns:
        `CLIP`, or `(CLIP, config)` with `return_config=True`.

    Example:
    ```python
    model = keras_clip.pretrained.load_checkpoint("ViT-B-32.pt")  # OpenAI's file
    keras_clip.pretrained.save_run(model, "runs/openai-b32")
    model = keras_clip.CLIP.from_preset("runs/openai-b32")
    ```
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
    kind = checkpoint_format(path)
    path = os.fspath(path)
    if kind == "state_dict":
        from keras_clip.pretrained.state_dict import load_state_dict_checkpoint

        model, config = load_state_dict_checkpoint(
            path, activation, tokenizer, vision_heads=vision_heads, text_heads=text_heads
        )
    elif kind == "hf":
        from keras_clip.pretrained.hf import load_hf_checkpoint

        model, config = load_hf_checkpoint(path, tokenizer)
    else:
        from keras_clip.pretrained.keras_hub_preset import load_keras_hub_preset

        model, config = load_keras_hub_preset(path, tokenizer)
    logger.info(
        "Loaded %s (%s): image activation %s, text activation %s.",
        path, kind, config["image_encoder"]["activation"], config["text_encoder"]["activation"],
    )
    return (model, config) if return_config else model


def load_for_from_preset(path, activation=None, tokenizer="auto", vision_heads=None, text_heads=None, print_fn=print):
    """`CLIP.from_preset(CHECKPOINT)`: `load_checkpoint` with OpenAI's
    tokenizer attached when the vocabulary is OpenAI's (`tokenizer="auto"`),
    as `keras-clip convert` does, and one line saying which activation was used
    (`activation=None` means the default, quick_gelu). Registered with
    `keras_clip.models.presets.register_checkpoint_loader`."""
    kind = checkpoint_format(path)
    model, config = load_checkpoint(
        path, activation=activation or "quick_gelu", tokenizer=tokenizer, vision_heads=vision_heads,
        text_heads=text_heads, return_config=True,
    )
    used = config["image_encoder"]["activation"]
    if kind == "state_dict":
        note = "" if activation else (
            " (the default; state dicts do not record it: pass activation='gelu' for most LAION weights)"
        )
    else:
        note = " (from the checkpoint's config" + (", activation= ignored)" if activation else ")")
    tokenizer_name = type(model.tokenizer).__name__ if model.tokenizer is not None else "none"
    print_fn(
        f"CLIP.from_preset: imported {path} ({kind}): {model.count_params():,} weights, image "
        f"{model.image_shape[0]} px, activation {used}{note}, tokenizer {tokenizer_name}."
    )
    return model
