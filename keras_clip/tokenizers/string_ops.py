"""TensorFlow string helpers shared by the tokenizers (usable in tf.data and
inside an exported graph)."""

import collections

import numpy as np
import tensorflow as tf

# Unicode punctuation (\p{P}) and symbols (\p{S}), RE2 syntax.
PUNCTUATION_PATTERN = r"[\p{P}\p{S}]"


def to_string_tensor(strings):
    """Converts str / list / numpy / tf.Tensor input to a tf.string tensor."""
    if isinstance(strings, (tf.Tensor, tf.Variable)):
        if strings.dtype != tf.string:
            raise TypeError(
                "A tokenizer expects string inputs; received a tensor "
                f"of dtype {strings.dtype.name}. Pass the raw captions, not "
                "token ids."
            )
        return tf.convert_to_tensor(strings)
    if isinstance(strings, (str, bytes)):
        return tf.constant(strings, dtype=tf.string)
    array = np.asarray(strings, dtype=object)
    for index, value in enumerate(array.reshape(-1)):
        if not isinstance(value, (str, bytes)):
            raise TypeError(
                "A tokenizer expects strings; the input has "
                f"{value!r} of type {type(value).__name__} at flat index "
                f"{index}."
            )
    return tf.constant(array, dtype=tf.string)


def split_words(strings, lowercase, split_punctuation):
    """(B,) tf.string -> ragged (B, None) tf.string of normalised words."""
    if lowercase:
        strings = tf.strings.lower(strings, encoding="utf-8")
    if split_punctuation:
        strings = tf.strings.regex_replace(
            strings, "(" + PUNCTUATION_PATTERN + ")", r" \1 "
        )
    else:
        strings = tf.strings.regex_replace(strings, PUNCTUATION_PATTERN, " ")
    return tf.strings.split(strings)  # splits on (and collapses) whitespace


def count_words(captions, lowercase, split_punctuation, chunk=8192):
    """A `collections.Counter` of the normalised words of `captions` (str or bytes)."""
    counts = collections.Counter()
    for begin in range(0, len(captions), chunk):
        words = split_words(
            tf.constant(captions[begin : begin + chunk], dtype=tf.string),
            lowercase=lowercase,
            split_punctuation=split_punctuation,
        )
        counts.update(w.decode("utf-8") for w in words.flat_values.numpy())
    return counts
