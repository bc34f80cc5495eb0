"""Builds an empty keras_clip `CLIP` of an imported checkpoint's architecture."""

import logging

from keras_clip.models.clip import CLIP
from keras_clip.models.presets import transformer_text_encoder, vit_image_encoder

logger = logging.getLogger("keras_clip.pretrained")

# OpenAI's BPE tokenizer: <|startoftext|> = 49406, <|endoftext|> = 49407, pads with 0.
OPENAI_VOCABULARY_SIZE = 49408
OPENAI_START_TOKEN_ID = 49406
OPENAI_END_TOKEN_ID = 49407


def special_token_ids(vocabulary_size, end_token_id=None):
    """End / pad / start ids. OpenAI's tokenizer puts <|endoftext|> last, and
    OpenAI and open_clip pool at `argmax(token_ids)`, the end token; keras_clip
    pools at `end_token_id`, which is therefore the vocabulary's last id."""
    if end_token_id is None:
        end_token_id = vocabulary_size - 1
    start = OPENAI_START_TOKEN_ID if vocabulary_size == OPENAI_VOCABULARY_SIZE else None
    return {"end_token_id": int(end_token_id), "pad_token_id": 0, "start_token_id": start}


def default_tokenizer(config):
    """OpenAI's BPE tokenizer (context length from `config`) when the text
    tower has OpenAI's vocabulary, else None: what `tokenizer="auto"` picks."""
    from keras_clip.tokenizers import CLIPTokenizer

    text = config["text_encoder"]
    if int(text["vocabulary_size"]) != OPENAI_VOCABULARY_SIZE:
        return None
    return CLIPTokenizer(context_length=int(text["context_length"]))


def check_tokenizer(tokenizer, config):
    """A tokenizer must produce ids the imported text tower can read."""
    if tokenizer is None:
        return
    text = config["text_encoder"]
    size = getattr(tokenizer, "vocabulary_size", None)
    size = size() if callable(size) else size
    if size is not None and int(size) != text["vocabulary_size"]:
        raise ValueError(
            f"The tokenizer has {size} tokens but the checkpoint's text tower has "
            f"{text['vocabulary_size']}; use the tokenizer the checkpoint was trained with "
            "(OpenAI's BPE for OpenAI/open_clip/HF CLIP weights)."
        )
    length = getattr(tokenizer, "context_length", None)
    if length is not None and int(length) > text["context_length"]:
        raise ValueError(
            f"The tokenizer pads to {length} tokens but the checkpoint's context length is "
            f"{text['context_length']}; build the tokenizer with context_length="
            f"{text['context_length']}."
        )


def build_clip_for(config, final_layer_norm_epsilon=1e-5, tokenizer=None):
    """An (initialised, not yet loaded) `CLIP` for a `model:` config dict
    with the ids in `config` (`end_token_id`, `pad_token_id`, `start_token_id`),
    or the tokenizer's when one is given (the model then pools at its end token).
    `tokenizer="auto"`: `default_tokenizer(config)`."""
    if isinstance(tokenizer, str) and tokenizer == "auto":
        tokenizer = default_tokenizer(config)
    check_tokenizer(tokenizer, config)
    if tokenizer is not None:
        for key in ("end_token_id", "pad_token_id", "start_token_id"):
            value = getattr(tokenizer, key, None)
            if value is not None or key == "start_token_id":
                config[key] = None if value is None else int(value)
    vision, text = config["image_encoder"], config["text_encoder"]
    image_encoder = vit_image_encoder(**vision)
    text_encoder = transformer_text_encoder(**text, final_layer_norm_epsilon=final_layer_norm_epsilon)
    logger.info(
        "Building CLIP: ViT %dx%d/%d width %d x %d layers (%s), text width %d x %d layers "
        "(%s), context %d, vocabulary %d, embed_dim %d.",
        vision["image_size"], vision["image_size"], vision["patch_size"], vision["width"],
        vision["layers"], vision["activation"], text["width"], text["layers"],
        text["activation"], text["context_length"], text["vocabulary_size"], config["embed_dim"],
    )
    return CLIP(
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        embed_dim=config["embed_dim"],
        end_token_id=config["end_token_id"],
        pad_token_id=config["pad_token_id"],
        start_token_id=config["start_token_id"],
        tokenizer=tokenizer,
    )
