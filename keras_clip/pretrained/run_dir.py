"""Writes an imported model as a keras_clip run directory."""

import json
import os

from keras_clip.config import load_config, save_config


def save_run(model, run_dir, model_config=None, source=None):
    """Saves `model` as a run directory: `model.keras` and `config.yaml` (the
    layout `keras-clip train` writes), plus `tokenizer/` when the model holds
    a tokenizer with a `save` method and `import.json` when `source` is given.

    `CLIP.from_preset(run_dir)` and `keras_clip.models.builder.load_run_model(run_dir)`
    load it back.

    Args:
        model: a `keras_clip.CLIP`.
        run_dir: str. Output folder (created).
        model_config: optional `model:` section (what `load_checkpoint(...,
            return_config=True)` returns); else read from the model.
        source: optional dict describing where the weights came from.
    """
    os.makedirs(run_dir, exist_ok=True)
    model.save(os.path.join(run_dir, "model.keras"))
    if model.tokenizer is not None and hasattr(model.tokenizer, "save"):
        model.tokenizer.save(os.path.join(run_dir, "tokenizer"))
    # The defaults (not the `shapes` recipe) with this model's architecture.
    config = load_config({"model": model_config or model_config_of(model)})
    save_config(config, os.path.join(run_dir, "config.yaml"))
    if source is not None:
        with open(os.path.join(run_dir, "import.json"), "w") as f:
            json.dump(source, f, indent=2)
    return run_dir


def model_config_of(model):
    """The `model:` config section describing an imported `CLIP`."""
    image, text = model.image_encoder, model.text_encoder
    return {
        "embed_dim": model.embed_dim,
        "image_encoder": {
            "image_size": int(model.image_shape[0]),
            "patch_size": int(image.patch_size),
            "width": int(image.hidden_dim),
            "layers": int(image.num_layers),
            "heads": int(image.num_heads),
            "mlp_dim": int(image.intermediate_dim),
            "activation": image.intermediate_activation,
        },
        "text_encoder": {
            "vocabulary_size": int(text.vocabulary_size),
            "context_length": int(text.max_sequence_length),
            "width": int(text.hidden_dim),
            "layers": int(text.num_layers),
            "heads": int(text.num_heads),
            "mlp_dim": int(text.intermediate_dim),
            "activation": text.intermediate_activation,
        },
        "end_token_id": model.end_token_id,
        "pad_token_id": model.pad_token_id,
        "start_token_id": model.start_token_id,
    }
