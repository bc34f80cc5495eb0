"""Checkpoint importers: OpenAI / open_clip state dicts, Hugging Face CLIPModel
folders and keras-hub CLIP presets into `keras_clip.CLIP`."""

from keras_clip.pretrained.loader import checkpoint_format, load_checkpoint
from keras_clip.pretrained.run_dir import save_run
from keras_clip.models.text_encoder import TextEncoder
