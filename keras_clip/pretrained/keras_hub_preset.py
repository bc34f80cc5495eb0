"""keras-hub `CLIPBackbone` presets: a local folder written by `save_to_preset`,
or a name / handle keras-hub's own loader resolves (`clip_vit_base_patch32`,
`kaggle://...`, which downloads when the user runs it)."""

import json
import logging
import os

import keras_hub
from keras import ops

from keras_clip.pretrained.build import build_clip_for, special_token_ids
from keras_clip.pretrained.mapping import assign, set_position_ids

logger = logging.getLogger("keras_clip.pretrained")


def is_keras_hub_folder(path):
    config = os.path.join(path, "config.json")
    if not (os.path.isfile(config) and os.path.isfile(os.path.join(path, "metadata.json"))):
        return False
    try:
        with open(config) as f:
            return json.load(f).get("class_name") == "CLIPBackbone"
    except (OSError, ValueError):
        return False


def _copy(target_model, source_model, label):
    """Copies weights between two keras-hub towers of one class and config;
    pairs are matched by their path with the model's name prefix removed."""
    targets, sources = target_model.weights, source_model.weights
    if len(targets) != len(sources):
        raise ValueError(
            f"{label}: the preset's tower has {len(sources)} weights, the rebuilt one {len(targets)}."
        )

    def local(variable, model):
        return variable.path.removeprefix(f"{model.name}_").removeprefix(f"{model.name}/")

    for target, source in zip(targets, sources):
        key = f"{label}:{local(source, source_model)}"
        if local(target, target_model) != local(source, source_model):
            raise ValueError(
                f"{key} pairs with {target.path!r}: the towers' weights are in a different order."
            )
        assign(target, ops.convert_to_numpy(source), key)


def load_keras_hub_preset(preset, tokenizer=None):
    """A `CLIP` holding a keras-hub `CLIPBackbone` preset's weights."""
    backbone = keras_hub.models.CLIPBackbone.from_preset(preset)
    vision, text = backbone.vision_encoder, backbone.text_encoder
    if vision.embedding.data_format != "channels_last":
        raise ValueError(f"Preset {preset!r} has a channels_first vision tower; keras_clip feeds NHWC.")
    config = {
        "embed_dim": int(backbone.projection_dim),
        "image_encoder": {
            "image_size": int(vision.image_shape[0]),
            "patch_size": int(vision.patch_size),
            "width": int(vision.hidden_dim),
            "layers": int(vision.num_layers),
            "heads": int(vision.num_heads),
            "mlp_dim": int(vision.intermediate_dim),
            "activation": vision.intermediate_activation,
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
    }
    if text.embedding_dim != text.hidden_dim:
        raise ValueError(
            f"Preset {preset!r}: text embedding_dim={text.embedding_dim} differs from "
            f"hidden_dim={text.hidden_dim}; keras_clip's text tower has one width."
        )
    # keras-hub pools at argmax(token_ids): the vocabulary's last id.
    config.update(special_token_ids(config["text_encoder"]["vocabulary_size"]))
    logger.info(
        "Importing keras-hub preset %s (activations: vision %s, text %s).",
        preset, config["image_encoder"]["activation"], config["text_encoder"]["activation"],
    )
    model = build_clip_for(config, final_layer_norm_epsilon=float(text.layer_norm.epsilon), tokenizer=tokenizer)
    _copy(model.image_encoder, vision, "vision_encoder")
    _copy(model.text_encoder, text, "text_encoder")
    assign(model.image_head.output_layer.kernel, ops.convert_to_numpy(backbone.vision_projection.kernel), "vision_projection/kernel")
    assign(model.text_head.output_layer.kernel, ops.convert_to_numpy(backbone.text_projection.kernel), "text_projection/kernel")
    assign(model.logit_scale.log_scale, ops.convert_to_numpy(backbone.clip_head.logit_scale), "clip_head/logit_scale")
    set_position_ids(model.image_encoder)
    return model, config
