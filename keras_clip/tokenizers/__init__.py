"""Tokenizers: the interface (`Tokenizer`) and its implementations."""

from keras_clip.tokenizers.base import Tokenizer, check_tokenizer
from keras_clip.tokenizers.caption_tokenizer import CaptionTokenizer
from keras_clip.tokenizers.clip_tokenizer import CLIPTokenizer

__all__ = ["Tokenizer", "check_tokenizer", "CaptionTokenizer", "CLIPTokenizer"]
