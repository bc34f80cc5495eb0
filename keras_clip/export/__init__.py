"""SavedModel export (TensorFlow Serving layout) from any Keras backend."""

from keras_clip.data.decode import decode_bytes as decode_image, decode_images, decode_rgb  # one decoder module for training and serving
from keras_clip.export.saved_model import export_run, export_saved_model, next_version
from keras_clip.utils.text_files import read_lines
