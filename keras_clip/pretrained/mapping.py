"""Name and layout rules between OpenAI/open_clip, Hugging Face and keras_clip's CLIP.

Every importer brings its checkpoint into one canonical form, the OpenAI /
open_clip state dict (names as in OpenAI's `clip/model.py`, NumPy float32
arrays), then `assign_openai_weights` writes it into a `keras_clip.CLIP`.

Layout rules (PyTorch -> Keras):
- Linear weights are `(out, in)`; Keras `Dense` kernels are `(in, out)`: transpose.
- The patch convolution is `(W, 3, p, p)` (OIHW); Keras' `Conv2D` kernel is
  `(p, p, 3, W)` (HWIO).
- `nn.MultiheadAttention` fuses q, k, v into `in_proj_weight` `(3W, W)`;
  Keras' `MultiHeadAttention` has one `EinsumDense` each, kernels
  `(W, heads, head_dim)`, and an output kernel `(heads, head_dim, W)`.
- open_clip multiplies `x @ proj` (`proj` is `(W, D)`, a Dense kernel as is);
  Hugging Face stores the projections as `Linear` weights `(D, W)`.
"""

import math
import re

import numpy as np
from keras import ops

# Scalars and buffers some checkpoints carry that hold no weights
# (OpenAI's TorchScript archives store the first three as tensors).
IGNORED_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask", "visual.attn_mask")

_BLOCK_PARTS = (
    "ln_1.weight",
    "ln_1.bias",
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)
_REQUIRED = (
    "visual.conv1.weight",
    "visual.positional_embedding",
    "visual.proj",
    "token_embedding.weight",
    "positional_embedding",
    "ln_final.weight",
    "text_projection",
)


def _count_blocks(keys, prefix):
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in keys for m in [pattern.match(k)] if m})


def infer_architecture(state_dict, activation="quick_gelu", vision_heads=None, text_heads=None):
    """The `model:` config of an OpenAI-layout state dict, read from tensor shapes.

    As OpenAI's `build_model`: widths from the patch convolution and the final
    text layer norm, layer counts from the `resblocks.N` indices, patch size
    from the convolution, image size from the positional embedding (a square
    grid plus the class token), context length and vocabulary from the text
    embeddings, the embedding size from `text_projection`, MLP sizes from
    `c_fc`. Heads cannot be read from shapes: `width // 64` (OpenAI's rule)
    unless given (open_clip's ViT-H/14 uses 16 heads of 80, say).

    Returns a dict in the layout of a recipe's `model:` section
    (`keras_clip.models.builder.build_clip`).
    """
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        hint = ""
        if "visual.layer1.0.conv1.weight" in state_dict:
            hint = " This is a ResNet CLIP (RN50, ...); only ViT image towers are supported."
        raise KeyError(
            f"Not an OpenAI/open_clip ViT CLIP state dict: missing {missing}.{hint} "
            f"Found keys such as {sorted(state_dict)[:5]}."
        )
    conv = state_dict["visual.conv1.weight"]
    if conv.ndim != 4 or conv.shape[2] != conv.shape[3]:
        raise ValueError(
            f"visual.conv1.weight has shape {conv.shape}; expected (width, 3, patch, patch)."
        )
    vision_width, patch_size = int(conv.shape[0]), int(conv.shape[-1])
    positions = int(state_dict["visual.positional_embedding"].shape[0])
    grid = int(round(math.sqrt(positions - 1)))
    if grid * grid + 1 != positions:
        raise ValueError(
            f"visual.positional_embedding has {positions} rows; expected a square grid of "
            f"patches plus the class token (e.g. 7 * 7 + 1 = 50)."
        )
    vision_layers = _count_blocks(state_dict, "visual.transformer.resblocks.")
    text_layers = _count_blocks(state_dict, "transformer.resblocks.")
    if not vision_layers or not text_layers:
        raise KeyError(
            f"Found {vision_layers} vision and {text_layers} text transformer blocks "
            "(keys 'visual.transformer.resblocks.N.*' / 'transformer.resblocks.N.*'); need both."
        )
    text_width = int(state_dict["ln_final.weight"].shape[0])
    token_embedding = state_dict["token_embedding.weight"]

    def mlp_dim(prefix):
        key = prefix + "0.mlp.c_fc.weight"
        if key not in state_dict:
            raise KeyError(f"Missing {key!r} (the first block's MLP).")
        return int(state_dict[key].shape[0])

    return {
        "embed_dim": int(state_dict["text_projection"].shape[1]),
        "image_encoder": {
            "image_size": grid * patch_size,
            "patch_size": patch_size,
            "width": vision_width,
            "layers": vision_layers,
            "heads": int(vision_heads or max(vision_width // 64, 1)),
            "mlp_dim": mlp_dim("visual.transformer.resblocks."),
            "activation": activation,
        },
        "text_encoder": {
            "vocabulary_size": int(token_embedding.shape[0]),
            "context_length": int(state_dict["positional_embedding"].shape[0]),
            "width": text_width,
            "layers": text_layers,
            "heads": int(text_heads or max(text_width // 64, 1)),
            "mlp_dim": mlp_dim("transformer.resblocks."),
            "activation": activation,
        },
    }


# ---------------------------------------------------------------- assignment
def _linear(w):
    return w.T  # (out, in) -> (in, out)


def _qkv(index, heads):
    def split(w):  # w: (3W, W) or (3W,)
        part = np.split(w, 3, axis=0)[index]
        if part.ndim == 1:
            return part.reshape(heads, -1)  # (heads, head_dim)
        return part.T.reshape(part.shape[1], heads, -1)  # (W, heads, head_dim)

    return split


def _out_proj(heads):
    return lambda w: w.T.reshape(heads, -1, w.shape[0])  # (heads, head_dim, W)


def _same(w):
    return w


def _block_layout(prefix, width, mlp):
    shapes = {
        "ln_1.weight": (width,), "ln_1.bias": (width,),
        "attn.in_proj_weight": (3 * width, width), "attn.in_proj_bias": (3 * width,),
        "attn.out_proj.weight": (width, width), "attn.out_proj.bias": (width,),
        "ln_2.weight": (width,), "ln_2.bias": (width,),
        "mlp.c_fc.weight": (mlp, width), "mlp.c_fc.bias": (mlp,),
        "mlp.c_proj.weight": (width, mlp), "mlp.c_proj.bias": (width,),
    }
    return {prefix + part: shapes[part] for part in _BLOCK_PARTS}


def checkpoint_layout(config):
    """`{key: shape}` of the OpenAI-layout state dict of `config`'s architecture."""
    vision, text = config["image_encoder"], config["text_encoder"]
    vw, tw, dim, patch = vision["width"], text["width"], config["embed_dim"], vision["patch_size"]
    positions = (vision["image_size"] // patch) ** 2 + 1
    layout = {
        "visual.conv1.weight": (vw, 3, patch, patch),
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (positions, vw),
        "visual.ln_pre.weight": (vw,),
        "visual.ln_pre.bias": (vw,),
    }
    for i in range(vision["layers"]):
        layout.update(_block_layout(f"visual.transformer.resblocks.{i}.", vw, vision["mlp_dim"]))
    layout.update({
        "visual.ln_post.weight": (vw,),
        "visual.ln_post.bias": (vw,),
        "visual.proj": (vw, dim),
        "token_embedding.weight": (text["vocabulary_size"], tw),
        "positional_embedding": (text["context_length"], tw),
    })
    for i in range(text["layers"]):
        layout.update(_block_layout(f"transformer.resblocks.{i}.", tw, text["mlp_dim"]))
    layout.update({
        "ln_final.weight": (tw,),
        "ln_final.bias": (tw,),
        "text_projection": (tw, dim),
        "logit_scale": (),
    })
    return layout


def validate_state_dict(state_dict, config):
    """Raises, before any model is built, on a tensor the importer does not
    know, one it needs and lacks, or one whose shape does not fit `config`.
    Normalises open_clip's `(1,)` logit scale to a scalar in place."""
    layout = checkpoint_layout(config)
    unknown = sorted(k for k in state_dict if k not in layout and k not in IGNORED_KEYS)
    if unknown:
        raise KeyError(
            f"The checkpoint holds {len(unknown)} tensor(s) this importer does not know, "
            f"first {unknown[:5]}; it maps OpenAI/open_clip ViT CLIP models without extras "
            "(no layer scale, attentional pooler, projection bias or ResNet tower)."
        )
    missing = [k for k in layout if k not in state_dict]
    if missing:
        raise KeyError(f"The checkpoint lacks {len(missing)} tensor(s), first {missing[:5]}.")
    scale = np.asarray(state_dict["logit_scale"])
    if scale.size == 1:
        state_dict["logit_scale"] = scale.reshape(())  # open_clip's nonscalar_logit_scale: (1,)
    for key, shape in layout.items():
        got = tuple(np.shape(state_dict[key]))
        if got != tuple(shape):
            raise ValueError(
                f"{key}: the checkpoint's tensor has shape {got} but the architecture "
                f"inferred from the other tensors expects {tuple(shape)} ({_summary(config)})."
            )


def _summary(config):
    v, t = config["image_encoder"], config["text_encoder"]
    return (
        f"ViT {v['image_size']}/{v['patch_size']} width {v['width']} x {v['layers']}, "
        f"text width {t['width']} x {t['layers']}, embed_dim {config['embed_dim']}"
    )


def _block_rules(prefix, layer, heads):
    attention = layer.attention
    qkv = (attention._query_dense, attention._key_dense, attention._value_dense)
    return [
        (prefix + "ln_1.weight", [(layer.layer_norm_1.gamma, _same)]),
        (prefix + "ln_1.bias", [(layer.layer_norm_1.beta, _same)]),
        (prefix + "attn.in_proj_weight", [(d.kernel, _qkv(i, heads)) for i, d in enumerate(qkv)]),
        (prefix + "attn.in_proj_bias", [(d.bias, _qkv(i, heads)) for i, d in enumerate(qkv)]),
        (prefix + "attn.out_proj.weight", [(attention._output_dense.kernel, _out_proj(heads))]),
        (prefix + "attn.out_proj.bias", [(attention._output_dense.bias, _same)]),
        (prefix + "ln_2.weight", [(layer.layer_norm_2.gamma, _same)]),
        (prefix + "ln_2.bias", [(layer.layer_norm_2.beta, _same)]),
        (prefix + "mlp.c_fc.weight", [(layer.dense_1.kernel, _linear)]),
        (prefix + "mlp.c_fc.bias", [(layer.dense_1.bias, _same)]),
        (prefix + "mlp.c_proj.weight", [(layer.dense_2.kernel, _linear)]),
        (prefix + "mlp.c_proj.bias", [(layer.dense_2.bias, _same)]),
    ]


def weight_rules(model, config):
    """`(key, [(keras variable, transform), ...])` for every tensor of an
    OpenAI-layout state dict (see `checkpoint_layout` for the shapes)."""
    image_encoder, text_encoder = model.image_encoder, model.text_encoder
    embedding = image_encoder.embedding
    rules = [
        ("visual.conv1.weight", [(embedding.patch_embedding.kernel, lambda w: w.transpose(2, 3, 1, 0))]),  # OIHW -> HWIO
        ("visual.class_embedding", [(embedding.class_embedding, _same)]),
        ("visual.positional_embedding", [(embedding.position_embedding.embeddings, _same)]),
        ("visual.ln_pre.weight", [(image_encoder.pre_layer_norm.gamma, _same)]),
        ("visual.ln_pre.bias", [(image_encoder.pre_layer_norm.beta, _same)]),
    ]
    for i, layer in enumerate(image_encoder.encoder_layers):
        rules += _block_rules(f"visual.transformer.resblocks.{i}.", layer, config["image_encoder"]["heads"])
    rules += [
        ("visual.ln_post.weight", [(image_encoder.layer_norm.gamma, _same)]),
        ("visual.ln_post.bias", [(image_encoder.layer_norm.beta, _same)]),
        ("visual.proj", [(model.image_head.output_layer.kernel, _same)]),
        ("token_embedding.weight", [(text_encoder.embedding.token_embedding.embeddings, _same)]),
        ("positional_embedding", [(text_encoder.embedding.position_embedding.position_embeddings, _same)]),
    ]
    for i, layer in enumerate(text_encoder.encoder_layers):
        rules += _block_rules(f"transformer.resblocks.{i}.", layer, config["text_encoder"]["heads"])
    rules += [
        ("ln_final.weight", [(text_encoder.layer_norm.gamma, _same)]),
        ("ln_final.bias", [(text_encoder.layer_norm.beta, _same)]),
        ("text_projection", [(model.text_head.output_layer.kernel, _same)]),
        ("logit_scale", [(model.logit_scale.log_scale, _same)]),
    ]
    return rules


def assign_openai_weights(model, state_dict, config):
    """Writes an OpenAI-layout state dict into `model` (built from `config`).

    Validates names and shapes first (`validate_state_dict`; errors name the
    key and both shapes). Also sets the vision tower's `position_ids` to
    `0..P` (no source stores them: keras-hub creates them as zeros).
    """
    validate_state_dict(state_dict, config)
    for key, targets in weight_rules(model, config):
        value = np.asarray(state_dict[key], dtype="float32")
        for variable, transform in targets:
            assign(variable, transform(value), key)
    set_position_ids(model.image_encoder)


def assign(variable, value, key):
    if tuple(variable.shape) != tuple(value.shape):
        raise ValueError(
            f"{key}: maps to a tensor of shape {tuple(value.shape)} but the Keras variable "
            f"{variable.path!r} has shape {tuple(variable.shape)}."
        )
    variable.assign(np.array(value, dtype=variable.dtype, order="C"))


def set_position_ids(image_encoder):
    """The patch position ids `0..P` (keras-hub creates them as zeros)."""
    position_ids = image_encoder.embedding.position_ids
    count = int(position_ids.shape[-1])
    position_ids.assign(ops.cast(ops.arange(count)[None, :], position_ids.dtype))


# ---------------------------------------------------------------- Hugging Face
_HF_RENAMES = [
    (r"^vision_model\.embeddings\.class_embedding$", "visual.class_embedding"),
    (r"^vision_model\.embeddings\.patch_embedding\.weight$", "visual.conv1.weight"),
    (r"^vision_model\.embeddings\.position_embedding\.weight$", "visual.positional_embedding"),
    (r"^vision_model\.pre_layrnorm\.(weight|bias)$", r"visual.ln_pre.\1"),
    (r"^vision_model\.post_layernorm\.(weight|bias)$", r"visual.ln_post.\1"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.", r"visual.transformer.resblocks.\1."),
    (r"^text_model\.embeddings\.token_embedding\.weight$", "token_embedding.weight"),
    (r"^text_model\.embeddings\.position_embedding\.weight$", "positional_embedding"),
    (r"^text_model\.final_layer_norm\.(weight|bias)$", r"ln_final.\1"),
    (r"^text_model\.encoder\.layers\.(\d+)\.", r"transformer.resblocks.\1."),
    (r"^logit_scale$", "logit_scale"),
]
_HF_BLOCK_RENAMES = [
    (r"\.layer_norm1\.", ".ln_1."),
    (r"\.layer_norm2\.", ".ln_2."),
    (r"\.mlp\.fc1\.", ".mlp.c_fc."),
    (r"\.mlp\.fc2\.", ".mlp.c_proj."),
    (r"\.self_attn\.out_proj\.", ".attn.out_proj."),
]
_HF_IGNORED = re.compile(r"(^|\.)position_ids$")
_QKV = re.compile(r"^(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$")


def hf_to_openai(state_dict):
    """A Hugging Face `CLIPModel` state dict in OpenAI's layout (q, k, v fused,
    projections transposed). An unknown key is an error naming it."""
    out, fused = {}, {}
    for hf_key, value in state_dict.items():
        if _HF_IGNORED.search(hf_key):
            continue
        if hf_key in ("visual_projection.weight", "text_projection.weight"):
            name = "visual.proj" if hf_key.startswith("visual") else "text_projection"
            out[name] = np.asarray(value).T  # Linear (D, W) -> x @ proj (W, D)
            continue
        key = hf_key
        for pattern, replacement in _HF_RENAMES:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        else:
            raise KeyError(
                f"Unknown tensor {hf_key!r} in a Hugging Face CLIP checkpoint; the importer "
                "maps CLIPModel (vision_model, text_model, both projections, logit_scale)."
            )
        for pattern, replacement in _HF_BLOCK_RENAMES:
            key = re.sub(pattern, replacement, key)
        match = _QKV.match(key)
        if match:
            prefix, which, kind = match.groups()
            fused.setdefault((prefix, kind), {})[which] = (hf_key, np.asarray(value))
            continue
        if "resblocks" in key and key.split(".resblocks.")[1].split(".", 1)[1] not in _BLOCK_PARTS:
            raise KeyError(f"Unknown tensor {hf_key!r} in a Hugging Face CLIP encoder layer.")
        out[key] = np.asarray(value)
    for (prefix, kind), parts in fused.items():
        lacking = [f"{p}_proj" for p in "qkv" if p not in parts]
        if lacking:
            have = next(iter(parts.values()))[0]
            raise KeyError(f"{have!r} comes without its {lacking} {kind} in the checkpoint.")
        shapes = {hf_key: value.shape for hf_key, value in parts.values()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"q, k and v projections differ in shape: {shapes}.")
        out[f"{prefix}.attn.in_proj_{kind}"] = np.concatenate([parts[p][1] for p in "qkv"], axis=0)
    return out
