"""Data: data sources (manifests, folders, tar shards, the synthetic shapes
set) behind one `DataSource` interface, tf.data pipelines, decoding."""

from keras_clip.tokenizers.caption_tokenizer import CaptionTokenizer
from keras_clip.data.pipeline import make_dataset
from keras_clip.data.shapes import ShapesDataset
from keras_clip.data.bad_records import BadRecordError
from keras_clip.data.bad_records import BadRecordLogger
from keras_clip.data.bad_records import BadRecordReport
from keras_clip.data.image_pipeline import image_text_dataset
from keras_clip.data.image_pipeline import load_eval_arrays
from keras_clip.data.image_pipeline import validate_source
from keras_clip.data.sources import DataSource
from keras_clip.data.sources import FolderSource
from keras_clip.data.sources import ImageRecord
from keras_clip.data.sources import ManifestSource
from keras_clip.data.sources import RecordSource
from keras_clip.data.sources import ShapesSource
from keras_clip.data.sources import ShardSource
from keras_clip.data.sources import open_source
from keras_clip.data.sources import register_source

__all__ = [
    "CaptionTokenizer",
    "ShapesDataset",
    "make_dataset",
    "BadRecordError",
    "BadRecordLogger",
    "BadRecordReport",
    "image_text_dataset",
    "load_eval_arrays",
    "validate_source",
    "DataSource",
    "FolderSource",
    "ImageRecord",
    "ManifestSource",
    "RecordSource",
    "ShapesSource",
    "ShardSource",
    "open_source",
    "register_source",
]
