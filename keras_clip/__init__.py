"""keras_clip: CLIP-style contrastive language-image training for Keras 3."""

from keras_clip import losses
from keras_clip.config import list_presets, load_config
from keras_clip.models import CLIP, EndTokenPooling, LogitScale, ProjectionHead
from keras_clip.models.builder import build_clip
from keras_clip import pretrained  # registers pretrained.TextEncoder, which imported .keras files name

__version__ = "0.1.0"
