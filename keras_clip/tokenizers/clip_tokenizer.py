"""OpenAI's byte-level BPE tokenizer (CLIP), usable eagerly, in tf.data and exports."""

import gzip
import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from keras_clip.tokenizers.base import Tokenizer
from keras_clip.tokenizers.clip_text_cleaning import clean_text_eager, clean_text_graph  # noqa: F401  (public here too)

MERGES_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
CONFIG_FILENAME = "tokenizer.json"
# Eager calls run the BPE graph on this many texts at a time: its merge loop
# costs (distinct new words) x (merge steps of the longest), so small chunks
# are much faster than one large batch. Batch tf.data pipelines similarly.
_EAGER_CHUNK = 64
DEFAULT_MERGES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", MERGES_FILENAME)

NUM_MERGES = 48894  # OpenAI uses the first 49152 - 256 - 2 merge lines.
START_TOKEN = "<start_of_text>"
END_TOKEN = "<end_of_text>"
# keras-hub's CLIPTokenizer insists on these names for the same two ids.
_KERAS_HUB_START = "<|startoftext|>"
_KERAS_HUB_END = "<|endoftext|>"

# OpenAI's pre-tokenizer (after cleaning and lower-casing), in RE2 syntax:
# the special tokens, English contractions, runs of letters, single digits,
# runs of anything else but whitespace.
_SPLIT_PATTERN = (
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"
)
# Python's str.split() whitespace (str.isspace), as an RE2 class.
def byte_symbols():
    """The 256 printable stand-ins for bytes 0..255 (OpenAI/GPT-2 scheme).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes (control
    characters, space, ...) are mapped, in byte order, to U+0100, U+0101, ...
    Returned in vocabulary order: the printable ones first, then the rest.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    codes = {b: b for b in printable}
    order = list(printable)
    extra = 0
    for b in range(256):
        if b not in codes:
            codes[b] = 256 + extra
            order.append(b)
            extra += 1
    return [(b, chr(codes[b])) for b in order]


def read_merges(path):
    """The first 48,894 merge rules of a CLIP merges file (.txt or .txt.gz)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : NUM_MERGES + 1]  # line 0 is a version header
    if len(merges) != NUM_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError(
            f"{path!r} is not a CLIP merges file: expected a header line and "
            f"at least {NUM_MERGES} lines 'a b'; found {len(lines)} lines."
        )
    return merges


def build_vocabulary(merges):
    """OpenAI's id order: bytes, bytes + '</w>', merge results, specials."""
    symbols = [s for _, s in byte_symbols()]
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [START_TOKEN, END_TOKEN]
    return tokens


class _Hidden:
    """Holds an object out of sight of Keras' layer tracking."""

    def __init__(self, value):
        self.value = value


@keras.saving.register_keras_serializable(package="keras_clip")
class CLIPTokenizer(Tokenizer):
    """OpenAI's CLIP tokenizer: byte-level BPE, 49,408 ids, context 77.

    Maps raw strings to `(B, context_length)` int32 ids
    `[<start_of_text>, t_1, ..., t_n, <end_of_text>, 0, ...]`, equal to
    `open_clip.get_tokenizer("ViT-B-32")` (OpenAI's `SimpleTokenizer`).
    Longer texts keep their first `context_length - 2` BPE tokens and the
    end token stays in the last place.

    Ids: the 256 byte symbols (0-255), the same with `</w>` (256-511), the
    48,894 merge results (512-49405), `<start_of_text>` = 49406,
    `<end_of_text>` = 49407; padding is 0 (as OpenAI pads).

    Two paths, one BPE engine (keras-hub's TensorFlow `CLIPTokenizer`
    fed one pre-split word at a time):
    - eager call (NumPy result): OpenAI's exact cleaning in Python (`ftfy`,
      HTML unescape twice, whitespace collapse, lower-case), then BPE;
    - inside a TF graph (`tf.data` map, `tf.function`, SavedModel): the
      cleaning of `clean_text_graph` (TensorFlow ops; ftfy cannot run
      there), then the same BPE. On text that ftfy leaves alone and whose
      HTML entities are the common ones it gives the same ids.

    Speed: the first call traces the BPE graph (seconds). keras-hub's engine
    caches every distinct word it has merged in a `MutableHashTable` (it
    grows with the vocabulary of the data and is saved with an export);
    new words cost (distinct new words) x (merge steps), so eager calls run
    in chunks of 64 texts and tf.data batches of ~64-256 work well.

    Export (`keras.export.ExportArchive`): track every table in
    `tokenizer.export_resources()` and add `tokenizer.tokenize` as a traced
    `tf.function` with a `tf.TensorSpec([None], tf.string)` signature.

    Args:
        context_length: int. Length of every output row, start and end
            tokens included. At least 2. Defaults to 77.
        merges_file: str or None. A CLIP merges file (`.txt` or `.txt.gz`,
            OpenAI's format); `None` (default) uses OpenAI's, shipped with
            keras_clip.
        name: str. Layer name.
        **kwargs: other `keras.layers.Layer` arguments.

    Example:
    ```python
    tokenizer = CLIPTokenizer()
    tokenizer(["a photo of a cat"])[:, :7]
    # array([[49406, 320, 1125, 539, 320, 2368, 49407]], dtype=int32)
    dataset = tf.data.Dataset.from_tensor_slices(["a cat"]).batch(1)
    dataset = dataset.map(tokenizer)  # graph mode, any Keras backend
    ```

    Reference:
    - [Radford et al., 2021](https://arxiv.org/abs/2103.00020)
    - https://github.com/openai/CLIP/blob/main/clip/simple_tokenizer.py
    """

    def __init__(self, context_length=77, merges_file=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        # === Config ===
        if not isinstance(context_length, (int, np.integer)) or isinstance(context_length, bool):
            raise TypeError(
                "context_length must be an int; received "
                f"{context_length!r} of type {type(context_length).__name__}."
            )
        if context_length < 2:
            raise ValueError(
                "context_length must be at least 2 (room for the start and end "
                f"tokens); received context_length={context_length}."
            )
        self._context_length = int(context_length)
        self.merges_file = merges_file
        path = DEFAULT_MERGES_PATH if merges_file is None else merges_file
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No CLIP merges file at {path!r}; pass merges_file=None for "
                "OpenAI's merges shipped with keras_clip."
            )
        self._merges = read_merges(path)
        self._vocabulary = build_vocabulary(self._merges)

        # === BPE engine (TensorFlow lookup tables, built eagerly) ===
        with tf.init_scope():
            self._engine = _Hidden(self._build_engine())
            self._unicode_digit_six = self._bpe_in_python("\u096c")
        self._encode_cleaned = tf.function(
            self._encode_cleaned_graph,
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
        )
        self.built = True

    def _build_engine(self):
        from keras_hub.tokenizers import CLIPTokenizer as KerasHubCLIPTokenizer

        vocabulary = {token: i for i, token in enumerate(self._vocabulary)}
        vocabulary[_KERAS_HUB_START] = vocabulary.pop(START_TOKEN)
        vocabulary[_KERAS_HUB_END] = vocabulary.pop(END_TOKEN)
        return KerasHubCLIPTokenizer(
            vocabulary=vocabulary,
            merges=list(self._merges),
            _allow_python_workflow=False,
        )

    def _bpe_in_python(self, word):
        """Plain OpenAI BPE of one pre-split word (used for one fix-up)."""
        byte_to_symbol = dict(byte_symbols())
        ranks = {tuple(m.split()): i for i, m in enumerate(self._merges)}
        parts = [byte_to_symbol[b] for b in word.encode("utf-8")]
        parts[-1] += "</w>"
        while len(parts) > 1:
            pairs = [(ranks.get(p, np.inf), i) for i, p in enumerate(zip(parts, parts[1:]))]
            rank, _ = min(pairs)
            if rank == np.inf:
                break
            first, second = next(p for p in zip(parts, parts[1:]) if ranks.get(p) == rank)
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        index = {token: i for i, token in enumerate(self._vocabulary)}
        return [index[p] for p in parts]

    # ------------------------------------------------------------------ #
    # Properties
    # ------------------------------------------------------------------ #
    @property
    def vocabulary_size(self):
        return len(self._vocabulary)

    @property
    def context_length(self):
        return self._context_length

    @property
    def start_token_id(self):
        return len(self._vocabulary) - 2

    @property
    def end_token_id(self):
        return len(self._vocabulary) - 1

    @property
    def pad_token_id(self):
        return 0

    def get_vocabulary(self):
        """The id -> token list (OpenAI's token strings)."""
        return list(self._vocabulary)

    # ------------------------------------------------------------------ #
    # Tokenization
    # ------------------------------------------------------------------ #
    def tokenize(self, strings):
        """Strings -> int32 ids: (T,) for a scalar, else (..., T).

        Eagerly: OpenAI's exact cleaning, NumPy result. In a TF graph: the
        TensorFlow cleaning of `clean_text_graph`, a `tf.Tensor` result.
        """
        if tf.executing_eagerly():
            array = _to_string_array(strings)
            cleaned = [clean_text_eager(s) for s in array.reshape(-1)]
            ids = np.zeros((len(cleaned), self._context_length), np.int32)  # (N, T)
            for begin in range(0, len(cleaned), _EAGER_CHUNK):
                chunk = cleaned[begin : begin + _EAGER_CHUNK]
                flat = tf.constant(chunk, dtype=tf.string, shape=[len(chunk)])
                ids[begin : begin + len(chunk)] = self._encode_cleaned(flat).numpy()
            return ids.reshape(array.shape + (self._context_length,))
        strings = tf.convert_to_tensor(strings)
        if strings.dtype != tf.string:
            raise TypeError(
                "CLIPTokenizer expects string inputs; received a tensor of "
                f"dtype {strings.dtype.name}. Pass the raw texts, not token ids."
            )
        if strings.shape.rank is None:
            raise ValueError(
                "CLIPTokenizer needs inputs of known rank (a scalar or a (B,) "
                "batch of strings); received a tensor of unknown rank."
            )
        flat = tf.reshape(strings, [-1])  # (N,)
        ids = self._encode_cleaned(clean_text_graph(flat))  # (N, T)
        out_shape = tf.concat([tf.shape(strings), [self._context_length]], axis=0)
        return tf.reshape(ids, out_shape)

    def _encode_cleaned_graph(self, texts):
        """(N,) cleaned tf.string -> (N, T) int32 (TensorFlow ops only)."""
        import tensorflow_text as tf_text

        words = tf_text.regex_split(texts, _SPLIT_PATTERN, _SPLIT_PATTERN)  # ragged (N, None)
        words = tf.ragged.boolean_mask(words, tf.strings.strip(words) != "")
        flat_words = words.flat_values  # (W,)
        flat_words = tf.where(flat_words == START_TOKEN, _KERAS_HUB_START, flat_words)
        flat_words = tf.where(flat_words == END_TOKEN, _KERAS_HUB_END, flat_words)
        # BPE each distinct word once (keras-hub's merge loop costs
        # words x merge steps); keras-hub caches words across calls.
        unique_words, word_index = tf.unique(flat_words)  # (U,), (W,)
        word_ids = self._engine.value.tokenize(unique_words)  # ragged (U, None)
        word_ids = tf.gather(word_ids, word_index)  # ragged (W, None)
        # keras-hub drops a lone U+096C (its internal split marker): add its ids.
        is_six = flat_words == "\u096c"
        six = tf.constant([self._unicode_digit_six], tf.int32)  # (1, k)
        six = tf.tile(six, [tf.size(flat_words), 1])  # (W, k)
        six = tf.RaggedTensor.from_tensor(six, lengths=tf.where(is_six, six.shape[1], 0))
        word_ids = tf.concat([tf.cast(word_ids, tf.int32), six], axis=1)  # ragged (W, None)
        ids = tf.RaggedTensor.from_row_splits(word_ids.flat_values, tf.gather(word_ids.row_splits, words.row_splits))
        ids = ids[:, : self._context_length - 2]  # ragged (N, <= T - 2)
        n = tf.shape(texts)[0]
        start = tf.fill([n, 1], tf.constant(self.start_token_id, tf.int32))
        end = tf.fill([n, 1], tf.constant(self.end_token_id, tf.int32))
        ids = tf.concat([start, ids, end], axis=1)
        return ids.to_tensor(default_value=self.pad_token_id, shape=[None, self._context_length])  # (N, T)

    def export_resources(self):
        engine = self._engine.value
        return [
            engine.byte2unicode,
            engine.unicode2byte,
            engine.token_to_id_map,
            engine.id_to_token_map,
            engine.merge_ranks,
            engine.cache.id2value,
        ]

    # ------------------------------------------------------------------ #
    # Serialization
    # ------------------------------------------------------------------ #
    def get_config(self):
        config = super().get_config()
        config.update({"context_length": self._context_length, "merges_file": self.merges_file})
        return config

    def save(self, dirpath):
        """Writes the merges file and `tokenizer.json` into `dirpath`."""
        os.makedirs(dirpath, exist_ok=True)
        source = DEFAULT_MERGES_PATH if self.merges_file is None else self.merges_file
        target = os.path.join(dirpath, MERGES_FILENAME)
        if source.endswith(".gz"):
            shutil.copyfile(source, target)
        else:
            with open(source, "rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        config = self.get_config()
        config.pop("dtype", None)
        config.pop("merges_file")
        config["class_name"] = type(self).__name__
        with open(os.path.join(dirpath, CONFIG_FILENAME), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)

    @classmethod
    def load(cls, dirpath):
        """Restores a tokenizer written by `save(dirpath)`."""
        config_path = os.path.join(dirpath, CONFIG_FILENAME)
        merges_path = os.path.join(dirpath, MERGES_FILENAME)
        for path in (config_path, merges_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Missing {path!r}; a saved CLIPTokenizer folder holds "
                    f"{MERGES_FILENAME} and {CONFIG_FILENAME}."
                )
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        config.pop("class_name", None)
        config["merges_file"] = merges_path
        return cls.from_config(config)


def _to_string_array(strings):
    """str / list / numpy / tf.Tensor -> numpy array of str."""
    if isinstance(strings, (tf.Tensor, tf.Variable)):
        if strings.dtype != tf.string:
            raise TypeError(
                "CLIPTokenizer expects string inputs; received a tensor of "
                f"dtype {strings.dtype.name}. Pass the raw texts, not token ids."
            )
        strings = strings.numpy()
    array = np.asarray(strings, dtype=object)
    out = np.empty(array.shape, dtype=object)
    for index, value in enumerate(array.reshape(-1)):
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            raise TypeError(
                f"CLIPTokenizer expects strings; the input has {value!r} of "
                f"type {type(value).__name__} at flat index {index}."
            )
        out.reshape(-1)[index] = value
    return out
