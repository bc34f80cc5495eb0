"""Input checks of `CLIP`: clear errors naming the received value and the fix."""

import keras
from keras import ops

from keras_clip.utils.backend import is_concrete


def check_images(images, image_shape):
    """Shape checks of a `(B, H, W, 3)` image batch against the model's `image_shape`."""
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(
            f"images must have shape (batch, height, width, 3) with RGB channels last; "
            f"received shape {shape}. Grey images need 3 channels (repeat the "
            f"channel), RGBA images need their alpha dropped."
        )
    expected = image_shape[:2]
    if None not in shape[1:3] and tuple(shape[1:3]) != tuple(expected):
        raise ValueError(
            f"images are {shape[1]}x{shape[2]} but this model expects "
            f"{expected[0]}x{expected[1]}; resize (and centre-crop) them first, "
            f"e.g. with keras.layers.Resizing({expected[0]}, {expected[1]}, "
            f"crop_to_aspect_ratio=True)."
        )

def looks_scaled_to_unit_range(images):
    """True when concrete float `images` all lie within [0, 1]: most likely
    pixels divided by 255 already, which the model then divides again. Only
    concrete (eager) inputs are looked at; a traced tensor gives False."""
    if not is_concrete(images):
        return False
    dtype = keras.backend.standardize_dtype(images.dtype)
    if "float" not in dtype:
        return False
    values = ops.convert_to_numpy(images)
    # A constant batch (black images, or the ones / zeros Keras builds a model
    # with) says nothing about the scale.
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    return 0.0 <= low < high <= 1.0


UNIT_RANGE_WARNING = (
    "keras_clip: every pixel of these images lies within [0, 1], but CLIP expects pixel values in "
    "[0, 255] (it divides by 255 and applies image_mean / image_std itself). If the images were scaled "
    "already, pass images * 255 (or the uint8 pixels). This warning is shown once per model."
)


def check_token_ids(token_ids, context_length=None, vocabulary_size=None):
    """Shape, dtype, length and (for concrete values) id-range checks of `(B, T)` token ids."""
    shape = tuple(token_ids.shape)
    if len(shape) != 2:
        raise ValueError(
            f"token_ids must have shape (batch, sequence_length); received shape {shape}. "
            f"Tokenize a list of captions (model.tokenizer(list_of_strings))."
        )
    dtype = keras.backend.standardize_dtype(token_ids.dtype)
    if "int" not in dtype:
        raise TypeError(
            f"token_ids must be integers; received dtype {dtype}. Token ids index "
            f"an embedding table: cast them with ops.cast(token_ids, 'int32') or "
            f"produce them with the model's tokenizer."
        )
    context = context_length
    if context is not None and shape[1] is not None and shape[1] > context:
        raise ValueError(
            f"token_ids have {shape[1]} positions but the text encoder's context "
            f"length is {context}; tokenize with context_length={context}."
        )
    vocab = vocabulary_size
    if vocab is not None and is_concrete(token_ids):
        values = ops.convert_to_numpy(token_ids)
        if values.size and (values.max() >= vocab or values.min() < 0):
            bad = values.max() if values.max() >= vocab else values.min()
            raise ValueError(
                f"token_ids contain id {int(bad)} but the vocabulary has {vocab} "
                f"entries (valid ids 0..{vocab - 1}); tokenize with the tokenizer "
                f"this model was built for."
            )

def unpack_inputs(inputs, image_shape, context_length=None, vocabulary_size=None):
    """`(images, token_ids)` of a CLIP input dict, both checked."""
    if not isinstance(inputs, dict):
        raise TypeError(
            "CLIP takes a dict {'images': ..., 'token_ids': ...}; received "
            f"{type(inputs).__name__}. For one modality use encode_image / encode_text."
        )
    missing = [k for k in ("images", "token_ids") if k not in inputs]
    if missing:
        raise KeyError(
            f"CLIP inputs lack {missing}; received keys {sorted(inputs)}. "
            "Expected {'images': (B, H, W, 3), 'token_ids': (B, T)[, 'labels': (B,)]}."
        )
    images, token_ids = inputs["images"], inputs["token_ids"]
    check_images(images, image_shape)
    check_token_ids(token_ids, context_length, vocabulary_size)
    b_img, b_txt = images.shape[0], token_ids.shape[0]
    if b_img is not None and b_txt is not None and b_img != b_txt:
        raise ValueError(
            f"images has batch {b_img} but token_ids has batch {b_txt}; each image "
            "needs exactly one caption (pair them before batching)."
        )
    if b_img == 0 or b_txt == 0:
        raise ValueError(
            "received an empty batch (0 images and captions); pass at least one pair "
            "(batch with drop_remainder=True to avoid empty batches)."
        )
    return images, token_ids
