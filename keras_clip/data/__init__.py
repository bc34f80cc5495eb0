"""Data: caption tokenizer, synthetic shapes data set, tf.data pipelines."""

from keras_clip.data.caption_tokenizer import CaptionTokenizer
from keras_clip.data.pipeline import make_dataset
from keras_clip.data.shapes import ShapesDataset

__all__ = ["CaptionTokenizer", "ShapesDataset", "make_dataset"]
