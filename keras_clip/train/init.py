"""Starting a run from pretrained weights: `model.init` names a run directory
(`keras-clip train` or `keras-clip convert` wrote it) or a checkpoint that
`keras_clip.pretrained.load_checkpoint` reads (OpenAI / open_clip state dict,
Hugging Face `CLIPModel` folder, keras-hub preset)."""

import os

from keras_clip.models.locking import TOWERS, lock_tower
from keras_clip.models.presets import load_run_model
from keras_clip.pretrained import load_checkpoint
from keras_clip.tokenizers import CLIPTokenizer

OPENAI_VOCABULARY = 49408


def default_tokenizer(model_config):
    """OpenAI's BPE tokenizer for a checkpoint with OpenAI's vocabulary, else None."""
    text = model_config["text_encoder"]
    if int(text["vocabulary_size"]) != OPENAI_VOCABULARY:
        return None
    return CLIPTokenizer(context_length=int(text["context_length"]))


def load_pretrained(path, activation="quick_gelu"):
    """(model, its `model:` config or None) from a run directory or a checkpoint.
    A checkpoint gets OpenAI's tokenizer when its vocabulary is OpenAI's."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "model.keras")):
        return load_run_model(path), None
    model, model_config = load_checkpoint(path, activation=activation, return_config=True)
    tokenizer = default_tokenizer(model_config)
    if tokenizer is not None:
        model, model_config = load_checkpoint(path, activation=activation, tokenizer=tokenizer, return_config=True)
    return model, model_config


def init_model(config, print_fn=print):
    """The model a run starts from when `model.init` is set; its tokenizer is
    the one the run uses (no vocabulary is built from the captions)."""
    path = config["model"]["init"]
    model, _ = load_pretrained(path, config["model"]["init_activation"])
    if model.tokenizer is None:
        raise ValueError(
            f"model.init={path!r} has no tokenizer (its vocabulary is not OpenAI's); convert it with "
            "`keras-clip convert` and a tokenizer, or train from scratch."
        )
    print_fn(
        f"Starting from {path}: {model.count_params():,} weights, image {model.image_shape[0]} px, "
        f"tokenizer {type(model.tokenizer).__name__} ({model.tokenizer.vocabulary_size} ids)."
    )
    return model


def apply_locks(model, lock_config, print_fn=print):
    """Freezes the towers `training.lock` names (see `keras_clip.models.locking`)."""
    for tower in TOWERS:
        spec = (lock_config or {}).get(tower)
        frozen = lock_tower(model, tower, spec)
        if frozen:
            print_fn(f"Locked the {tower} tower ({spec}): {frozen} weight tensors frozen.")
