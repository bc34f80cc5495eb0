"""A word-level caption tokenizer built from the user's own captions."""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_clip.tokenizers.base import Tokenizer
from keras_clip.tokenizers.string_ops import count_words, split_words, to_string_tensor

PAD_TOKEN = "<pad>"
UNKNOWN_TOKEN = "<unk>"
START_TOKEN = "<start>"
END_TOKEN = "<end>"
SPECIAL_TOKENS = (PAD_TOKEN, UNKNOWN_TOKEN, START_TOKEN, END_TOKEN)


VOCABULARY_FILENAME = "vocabulary.txt"
CONFIG_FILENAME = "tokenizer.json"


@keras.saving.register_keras_serializable(package="keras_clip")
class CaptionTokenizer(Tokenizer):
    """Word-level caption tokenizer, usable eagerly, in tf.data and exports.

    Maps raw caption strings to fixed-length int32 token id sequences:
    `[<start>, w_1, ..., w_n, <end>, <pad>, ...]`, exactly `context_length`
    long. Longer captions are truncated to `context_length - 2` words so the
    sequence always keeps both the start and the end token (a text encoder
    that pools at the end token then always finds one).

    Id conventions (fixed):
    `0 = "<pad>"`, `1 = "<unk>"`, `2 = "<start>"`, `3 = "<end>"`, then the
    `vocabulary` words in the given order (the word `vocabulary[i]` has id
    `i + 4`).

    Normalisation, applied identically when learning a vocabulary
    (`from_corpus`) and when tokenizing:
    1. optional lower-casing (Unicode aware);
    2. punctuation and symbols (Unicode classes P and S, e.g. `. , - ! ? '`)
       are replaced by a space, so `"left-of"` becomes `"left of"` and
       `"circle."` becomes `"circle"` (with `split_punctuation=True` each
       such character is kept as a token of its own instead:
       `"left", "-", "of"`);
    3. split on runs of whitespace (leading/trailing whitespace ignored).
    Words not in the vocabulary map to `<unk>` (id 1). An empty caption
    gives `[<start>, <end>, <pad>, ...]`.

    The lookup is done with TensorFlow string ops and a
    `tf.lookup.StaticHashTable`, so the layer runs inside
    `tf.data.Dataset.map` on every Keras backend and inside a `tf.function`
    for SavedModel export. Called eagerly (outside any TF graph) it returns
    a numpy int32 array that can be fed to a model on any backend; inside a
    TF graph it returns a `tf.Tensor`.

    Export (`keras.export.ExportArchive`): under the TensorFlow backend
    track the layer itself; under JAX / PyTorch track
    `tokenizer.lookup_table` and add the endpoint as an already traced
    `tf.function` (so Keras does not route string inputs through jax2tf):
    ```python
    archive.track(tokenizer.lookup_table)
    encode = tf.function(
        tokenizer.tokenize,
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    encode.get_concrete_function()
    archive.add_endpoint("tokenize", encode)
    ```

    Args:
        vocabulary: list of str. The word tokens, most useful first; the
            special tokens must not be included.
        context_length: int. Length of every output sequence, including the
            start and end tokens. At least 2.
        lowercase: bool. Lower-case the text before splitting.
        split_punctuation: bool. If `False` (default) punctuation is
            removed; if `True` each punctuation character becomes a token.
        name: str. Layer name.
        **kwargs: other `keras.layers.Layer` arguments.

    Example:
    ```python
    tokenizer = CaptionTokenizer.from_corpus(
        ["a red circle", "a small blue square."], context_length=8
    )
    tokenizer("A red square!")
    # array([2, 4, 7, 9, 3, 0, 0, 0], dtype=int32)  a=4, red=7, square=9
    dataset = tf.data.Dataset.from_tensor_slices(["a red circle"]).batch(1)
    dataset = dataset.map(tokenizer)  # graph mode, any Keras backend
    ```
    """

    def __init__(
        self,
        vocabulary,
        context_length=32,
        lowercase=True,
        split_punctuation=False,
        name=None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        # === Config ===
        vocabulary = self._validate_vocabulary(vocabulary)
        if not isinstance(context_length, (int, np.integer)) or isinstance(
            context_length, bool
        ):
            raise TypeError(
                "context_length must be an int; received "
                f"{context_length!r} of type {type(context_length).__name__}."
            )
        if context_length < 2:
            raise ValueError(
                "context_length must be at least 2 (room for the start and "
                f"end tokens); received context_length={context_length}."
            )
        self._vocabulary = vocabulary
        self._context_length = int(context_length)
        self.lowercase = bool(lowercase)
        self.split_punctuation = bool(split_punctuation)

        # === Lookup table (word -> id, unknown -> 1) ===
        self._lookup_table = self._build_table()
        self.built = True

    # ------------------------------------------------------------------ #
    # Construction helpers
    # ------------------------------------------------------------------ #
    @staticmethod
    def _validate_vocabulary(vocabulary):
        if isinstance(vocabulary, (str, bytes)):
            raise TypeError(
                "vocabulary must be a list of word tokens, not a single "
                f"string; received {vocabulary!r}. To learn a vocabulary "
                "from captions use CaptionTokenizer.from_corpus(captions)."
            )
        words = []
        seen = set()
        for index, word in enumerate(list(vocabulary)):
            if isinstance(word, bytes):
                word = word.decode("utf-8")
            if not isinstance(word, str):
                raise TypeError(
                    f"vocabulary[{index}] must be a str; received {word!r} "
                    f"of type {type(word).__name__}."
                )
            if word in SPECIAL_TOKENS:
                raise ValueError(
                    f"vocabulary[{index}] is the special token {word!r}; "
                    "special tokens are added automatically "
                    f"({', '.join(SPECIAL_TOKENS)} get ids 0-3). Remove it "
                    "from the vocabulary."
                )
            if not word or any(c.isspace() for c in word):
                raise ValueError(
                    f"vocabulary[{index}] = {word!r} is empty or contains "
                    "whitespace; tokens are whitespace-separated words."
                )
            if word in seen:
                raise ValueError(
                    f"vocabulary[{index}] = {word!r} is a duplicate; each "
                    "word may appear once."
                )
            seen.add(word)
            words.append(word)
        return words

    def _build_table(self):
        keys = list(SPECIAL_TOKENS) + self._vocabulary
        # Build the table eagerly even if the layer is created inside a
        # graph (e.g. from_config inside a tf.function).
        with tf.init_scope():
            initializer = tf.lookup.KeyValueTensorInitializer(
                keys=tf.constant(keys, dtype=tf.string),
                values=tf.range(len(keys), dtype=tf.int32),
                key_dtype=tf.string,
                value_dtype=tf.int32,
            )
            return tf.lookup.StaticHashTable(
                initializer, default_value=self.unknown_token_id
            )

    @classmethod
    def from_corpus(
        cls,
        captions,
        context_length=32,
        max_vocabulary_size=None,
        min_count=1,
        lowercase=True,
        split_punctuation=False,
        **kwargs,
    ):
        """Learns a vocabulary from captions and returns a tokenizer.

        Words are normalised exactly as at tokenization time, counted, and
        ordered by decreasing count, ties broken alphabetically (the result
        is deterministic). Words seen fewer than `min_count` times are
        dropped; at most `max_vocabulary_size` words are kept (specials
        not counted).

        Args:
            captions: list of str (or a 1-D numpy array of str/bytes).
            context_length: int. See the class docstring.
            max_vocabulary_size: int or None. Cap on the number of words.
            min_count: int. Minimum number of occurrences of a word.
            lowercase: bool. See the class docstring.
            split_punctuation: bool. See the class docstring.
            **kwargs: passed to the constructor (e.g. `name`).
        """
        if isinstance(captions, (str, bytes)):
            raise TypeError(
                "captions must be a list of strings, not a single string; "
                f"received {captions!r}. Wrap it in a list: [captions]."
            )
        if isinstance(captions, np.ndarray):
            captions = list(captions.reshape(-1))
        else:
            captions = list(captions)
        if not captions:
            raise ValueError(
                "from_corpus received an empty list of captions (0 "
                "captions); pass at least one caption string to learn a "
                "vocabulary from, or build CaptionTokenizer(vocabulary=[...]) "
                "directly."
            )
        for index, caption in enumerate(captions):
            if not isinstance(caption, (str, bytes)):
                raise TypeError(
                    f"captions[{index}] must be a str; received {caption!r} "
                    f"of type {type(caption).__name__}."
                )
        if min_count < 1:
            raise ValueError(
                f"min_count must be >= 1; received min_count={min_count}."
            )
        if max_vocabulary_size is not None and max_vocabulary_size < 0:
            raise ValueError(
                "max_vocabulary_size must be None or >= 0; received "
                f"max_vocabulary_size={max_vocabulary_size}."
            )

        counts = count_words(captions, lowercase, split_punctuation)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        vocabulary = [word for word, count in ordered if count >= min_count]
        if max_vocabulary_size is not None:
            vocabulary = vocabulary[:max_vocabulary_size]
        return cls(
            vocabulary=vocabulary,
            context_length=context_length,
            lowercase=lowercase,
            split_punctuation=split_punctuation,
            **kwargs,
        )

    # ------------------------------------------------------------------ #
    # Properties
    # ------------------------------------------------------------------ #
    @property
    def vocabulary_size(self):
        """Number of ids, special tokens included."""
        return len(SPECIAL_TOKENS) + len(self._vocabulary)

    @property
    def context_length(self):
        return self._context_length

    @property
    def pad_token_id(self):
        return 0

    @property
    def unknown_token_id(self):
        return 1

    @property
    def start_token_id(self):
        return 2

    @property
    def end_token_id(self):
        return 3

    @property
    def lookup_table(self):
        """The `tf.lookup.StaticHashTable` (track it when exporting)."""
        return self._lookup_table

    def get_vocabulary(self):
        """The full id -> token list, special tokens included."""
        return list(SPECIAL_TOKENS) + list(self._vocabulary)

    # ------------------------------------------------------------------ #
    # Tokenization
    # ------------------------------------------------------------------ #
    def tokenize(self, strings):
        """Tokenizes strings; returns (T,) for a scalar, else (..., T) int32.

        Returns a numpy array when running eagerly, a `tf.Tensor` inside a
        TF graph (tf.data map, tf.function).
        """
        strings = to_string_tensor(strings)
        token_ids = self._tokenize_tensor(strings)
        if tf.executing_eagerly():
            return token_ids.numpy()
        return token_ids

    def _tokenize_tensor(self, strings):
        rank = strings.shape.rank
        if rank is None:
            raise ValueError(
                "CaptionTokenizer needs inputs of known rank (a scalar or a "
                "(B,) batch of strings); received a tensor of unknown rank."
            )
        if rank == 0:
            return self._tokenize_batch(strings[tf.newaxis])[0]  # (T,)
        if rank == 1:
            return self._tokenize_batch(strings)  # (B, T)
        # (..., ) -> flatten, tokenize, restore leading dims.
        flat = tf.reshape(strings, [-1])
        token_ids = self._tokenize_batch(flat)  # (N, T)
        out_shape = tf.concat(
            [tf.shape(strings), [self._context_length]], axis=0
        )
        return tf.reshape(token_ids, out_shape)

    def _tokenize_batch(self, strings):
        """(B,) tf.string -> (B, T) int32."""
        words = split_words(
            strings,
            lowercase=self.lowercase,
            split_punctuation=self.split_punctuation,
        )  # ragged (B, None)
        ids = tf.ragged.map_flat_values(self._lookup_table.lookup, words)
        ids = ids[:, : self._context_length - 2]  # keep room for start/end
        batch = tf.shape(strings)[0]
        start = tf.fill([batch, 1], tf.constant(self.start_token_id, tf.int32))
        end = tf.fill([batch, 1], tf.constant(self.end_token_id, tf.int32))
        ids = tf.concat([start, ids, end], axis=1)  # ragged (B, <= T)
        return ids.to_tensor(
            default_value=self.pad_token_id,
            shape=[None, self._context_length],
        )  # (B, T)

    def export_resources(self):
        return [self._lookup_table]

    def detokenize(self, ids):
        """Token ids (T,) or (B, T) -> list of str, special tokens dropped.

        A single sequence (1-D input) gives a list with one string.
        """
        if isinstance(ids, (tf.Tensor, tf.Variable)):
            ids = ids.numpy()
        elif not isinstance(ids, (list, tuple, np.ndarray)):
            ids = keras.ops.convert_to_numpy(ids)
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[np.newaxis]
        if ids.ndim != 2:
            raise ValueError(
                "detokenize expects ids of shape (T,) or (B, T); received "
                f"shape {ids.shape}."
            )
        vocab = self.get_vocabulary()
        first_word = len(SPECIAL_TOKENS)
        texts = []
        for row in ids:
            words = []
            for token_id in row:
                token_id = int(token_id)
                if token_id == self.end_token_id:
                    break
                if first_word <= token_id < len(vocab):
                    words.append(vocab[token_id])
            texts.append(" ".join(words))
        return texts

    # ------------------------------------------------------------------ #
    # Serialization
    # ------------------------------------------------------------------ #
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": list(self._vocabulary),
                "context_length": self._context_length,
                "lowercase": self.lowercase,
                "split_punctuation": self.split_punctuation,
            }
        )
        return config

    def save(self, dirpath):
        """Writes `vocabulary.txt` (specials included) and `tokenizer.json`."""
        os.makedirs(dirpath, exist_ok=True)
        with open(
            os.path.join(dirpath, VOCABULARY_FILENAME), "w", encoding="utf-8"
        ) as f:
            for token in self.get_vocabulary():
                f.write(token + "\n")
        config = self.get_config()
        config.pop("vocabulary")
        config.pop("dtype", None)
        config["class_name"] = type(self).__name__
        config["special_tokens"] = list(SPECIAL_TOKENS)
        with open(
            os.path.join(dirpath, CONFIG_FILENAME), "w", encoding="utf-8"
        ) as f:
            json.dump(config, f, indent=2, sort_keys=True)

    @classmethod
    def load(cls, dirpath):
        """Restores a tokenizer written by `save(dirpath)`."""
        if not os.path.isdir(dirpath):
            raise FileNotFoundError(
                f"No tokenizer directory at {dirpath!r}; expected a folder "
                f"with {VOCABULARY_FILENAME} and {CONFIG_FILENAME} written "
                "by CaptionTokenizer.save(dirpath)."
            )
        vocab_path = os.path.join(dirpath, VOCABULARY_FILENAME)
        config_path = os.path.join(dirpath, CONFIG_FILENAME)
        for path in (vocab_path, config_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Missing {path!r}; a saved tokenizer folder holds "
                    f"{VOCABULARY_FILENAME} and {CONFIG_FILENAME}."
                )
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        with open(vocab_path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        while tokens and tokens[-1] == "":
            tokens.pop()
        specials = list(config.pop("special_tokens", SPECIAL_TOKENS))
        config.pop("class_name", None)
        if tokens[: len(specials)] != list(SPECIAL_TOKENS):
            raise ValueError(
                f"{vocab_path!r} must start with the special tokens "
                f"{list(SPECIAL_TOKENS)}; found {tokens[:len(specials)]}."
            )
        config["vocabulary"] = tokens[len(SPECIAL_TOKENS) :]
        return cls.from_config(config)
