from keras_clip.models.clip import CLIP
from keras_clip.models.end_token_pooling import EndTokenPooling
from keras_clip.models.logit_scale import ClipValue, LogitScale
from keras_clip.models.projection_head import ProjectionHead
from keras_clip.models.text_encoder import TextEncoder
from keras_clip.models.vision_encoder import VisionEncoder
