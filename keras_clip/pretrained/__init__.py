"""Checkpoint importers: OpenAI / open_clip state dicts, Hugging Face CLIPModel
folders and keras-hub CLIP presets into `keras_clip.CLIP`.

Importing this package registers `load_for_from_preset` with
`keras_clip.models.presets`, so that `CLIP.from_preset(CHECKPOINT)` works.
"""

from keras_clip.models.presets import register_checkpoint_loader
from keras_clip.models.text_encoder import TextEncoder
from keras_clip.pretrained.loader import checkpoint_format, load_checkpoint, load_for_from_preset
from keras_clip.pretrained.run_dir import save_run

register_checkpoint_loader(load_for_from_preset)
