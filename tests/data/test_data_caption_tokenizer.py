"""CaptionTokenizer: normalisation, ids, tf.data / tf.function, saving."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_clip.data import CaptionTokenizer

PAD, UNK, START, END = 0, 1, 2, 3


@pytest.fixture
def tokenizer():
    # Ids: a=4, red=5, circle=6, blue=7, square=8, left=9, of=10.
    return CaptionTokenizer(
        ["a", "red", "circle", "blue", "square", "left", "of"],
        context_length=8,
    )


def test_hand_example_exact_ids(tokenizer):
    ids = tokenizer("a red circle")
    np.testing.assert_array_equal(ids, [START, 4, 5, 6, END, PAD, PAD, PAD])
    assert isinstance(ids, np.ndarray)
    assert ids.dtype == np.int32
    assert ids.shape == (8,)


def test_special_ids_and_vocabulary(tokenizer):
    assert tokenizer.pad_token_id == 0
    assert tokenizer.unknown_token_id == 1
    assert tokenizer.start_token_id == 2
    assert tokenizer.end_token_id == 3
    assert tokenizer.vocabulary_size == 4 + 7
    assert tokenizer.context_length == 8
    vocab = tokenizer.get_vocabulary()
    assert vocab[:4] == ["<pad>", "<unk>", "<start>", "<end>"]
    assert vocab[4:] == ["a", "red", "circle", "blue", "square", "left", "of"]


def test_lowercase(tokenizer):
    np.testing.assert_array_equal(
        tokenizer("A RED Circle"), tokenizer("a red circle")
    )
    cased = CaptionTokenizer(["red"], context_length=4, lowercase=False)
    np.testing.assert_array_equal(cased("RED red"), [START, UNK, 4, END])


def test_punctuation_removed_by_default(tokenizer):
    np.testing.assert_array_equal(
        tokenizer("left-of"), tokenizer("left of")
    )
    np.testing.assert_array_equal(
        tokenizer("a red circle."), tokenizer("a red circle")
    )
    np.testing.assert_array_equal(
        tokenizer("  a,red!!circle?  "), tokenizer("a red circle")
    )


def test_punctuation_split_option():
    tok = CaptionTokenizer.from_corpus(
        ["left-of the circle."], context_length=10, split_punctuation=True
    )
    words = tok.detokenize(tok("left-of the circle."))[0].split()
    assert words == ["left", "-", "of", "the", "circle", "."]


def test_whitespace_collapsed(tokenizer):
    np.testing.assert_array_equal(
        tokenizer(" a \t red\n\n circle "), tokenizer("a red circle")
    )


def test_unknown_words(tokenizer):
    np.testing.assert_array_equal(
        tokenizer("a green hexagon"), [START, 4, UNK, UNK, END, 0, 0, 0]
    )


def test_empty_string(tokenizer):
    expected = [START, END] + [PAD] * 6
    np.testing.assert_array_equal(tokenizer(""), expected)
    np.testing.assert_array_equal(tokenizer("  ...  "), expected)


def test_truncation_keeps_start_and_end(tokenizer):
    ids = tokenizer("a red circle a blue square left of a red circle")
    np.testing.assert_array_equal(ids, [START, 4, 5, 6, 4, 7, 8, END])
    # Exactly T - 2 words: no truncation, no padding.
    ids = tokenizer("a red circle a blue square")
    np.testing.assert_array_equal(ids, [START, 4, 5, 6, 4, 7, 8, END])


def test_padding_to_context_length():
    tok = CaptionTokenizer(["x"], context_length=16)
    ids = tok(["x", "x x x"])
    assert ids.shape == (2, 16)
    np.testing.assert_array_equal(ids[0, 3:], 0)
    np.testing.assert_array_equal(ids[1, :5], [START, 4, 4, 4, END])
    np.testing.assert_array_equal(ids[1, 5:], 0)


@pytest.mark.parametrize(
    "inputs",
    [
        ["a red circle", "blue square"],
        np.array(["a red circle", "blue square"]),
        np.array([b"a red circle", b"blue square"]),
        np.array(["a red circle", "blue square"], dtype=object),
        tf.constant(["a red circle", "blue square"]),
        ("a red circle", "blue square"),
    ],
    ids=["list", "numpy_str", "numpy_bytes", "numpy_object", "tf", "tuple"],
)
def test_batch_input_types(tokenizer, inputs):
    ids = tokenizer(inputs)
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int32
    np.testing.assert_array_equal(
        ids,
        [[START, 4, 5, 6, END, 0, 0, 0], [START, 7, 8, END, 0, 0, 0, 0]],
    )


def test_scalar_inputs(tokenizer):
    for value in ("red", b"red", np.str_("red"), tf.constant("red")):
        ids = tokenizer(value)
        assert ids.shape == (8,)
        np.testing.assert_array_equal(ids[:3], [START, 5, END])


def test_higher_rank_input(tokenizer):
    ids = tokenizer(np.array([["a", "red"], ["blue", ""]]))
    assert ids.shape == (2, 2, 8)
    np.testing.assert_array_equal(ids[1, 0, :3], [START, 7, END])


def test_call_and_tokenize_agree(tokenizer):
    captions = ["a red circle", "left of a blue square"]
    np.testing.assert_array_equal(tokenizer(captions), tokenizer.tokenize(captions))
    np.testing.assert_array_equal(tokenizer(captions), tokenizer.call(captions))


def test_tf_data_map_graph_mode(tokenizer):
    captions = ["a red circle", "blue square", "", "a a a a a a a a a"]
    expected = tokenizer(captions)

    batched = tf.data.Dataset.from_tensor_slices(captions).batch(2)
    batched = batched.map(tokenizer)
    assert batched.element_spec.dtype == tf.int32
    assert batched.element_spec.shape.as_list() == [None, 8]
    got = np.concatenate(list(batched.as_numpy_iterator()))
    np.testing.assert_array_equal(got, expected)

    unbatched = tf.data.Dataset.from_tensor_slices(captions).map(tokenizer)
    assert unbatched.element_spec.shape.as_list() == [8]
    got = np.stack(list(unbatched.as_numpy_iterator()))
    np.testing.assert_array_equal(got, expected)


def test_inside_tf_function_returns_tensor(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(strings):
        ids = tokenizer(strings)
        assert isinstance(ids, tf.Tensor)  # traced: a graph tensor
        return ids

    out = encode(tf.constant(["a red circle", "zzz"]))
    assert isinstance(out, tf.Tensor) and out.dtype == tf.int32
    np.testing.assert_array_equal(out.numpy(), tokenizer(["a red circle", "zzz"]))


def test_export_archive(tokenizer, tmp_path):
    """The recipe documented in the class docstring, on every backend."""
    archive = keras.export.ExportArchive()
    if keras.backend.backend() == "tensorflow":
        archive.track(tokenizer)
    else:
        archive.track(tokenizer.lookup_table)
    encode = tf.function(
        tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    encode.get_concrete_function()
    archive.add_endpoint("tokenize", encode)
    path = str(tmp_path / "archive")
    archive.write_out(path, verbose=False)
    restored = tf.saved_model.load(path)
    out = restored.tokenize(tf.constant(["A red circle!", "blue"]))
    np.testing.assert_array_equal(out.numpy(), tokenizer(["a red circle", "blue"]))


def test_saved_model_export(tokenizer, tmp_path):
    module = tf.Module()
    module.table = tokenizer.lookup_table  # tracked on every backend
    module.encode = tf.function(
        tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    path = str(tmp_path / "exported")
    tf.saved_model.save(module, path)
    restored = tf.saved_model.load(path)
    out = restored.encode(tf.constant(["A red circle!", "blue"]))
    np.testing.assert_array_equal(out.numpy(), tokenizer(["a red circle", "blue"]))


def test_from_corpus_order_is_deterministic():
    captions = ["b a", "c a", "b", "d", "a"]
    tok = CaptionTokenizer.from_corpus(captions, context_length=6)
    # a:3, b:2, then c and d tie at 1 -> alphabetical.
    assert tok.get_vocabulary()[4:] == ["a", "b", "c", "d"]
    again = CaptionTokenizer.from_corpus(list(reversed(captions)), context_length=6)
    assert again.get_vocabulary() == tok.get_vocabulary()


def test_from_corpus_options():
    captions = ["Red circle.", "red square", "red-circle", "blue"]
    tok = CaptionTokenizer.from_corpus(captions, min_count=2)
    assert tok.get_vocabulary()[4:] == ["red", "circle"]
    tok = CaptionTokenizer.from_corpus(captions, max_vocabulary_size=1)
    assert tok.get_vocabulary()[4:] == ["red"]
    tok = CaptionTokenizer.from_corpus(captions, lowercase=False)
    assert "Red" in tok.get_vocabulary() and "red" in tok.get_vocabulary()
    tok = CaptionTokenizer.from_corpus(np.array(captions), context_length=5)
    assert tok.context_length == 5


def test_from_corpus_errors():
    with pytest.raises(ValueError, match="empty list of captions"):
        CaptionTokenizer.from_corpus([])
    with pytest.raises(TypeError, match=r"captions\[1\].*3"):
        CaptionTokenizer.from_corpus(["a red circle", 3])
    with pytest.raises(TypeError, match="single string"):
        CaptionTokenizer.from_corpus("a red circle")


def test_constructor_errors():
    with pytest.raises(ValueError, match="special token"):
        CaptionTokenizer(["red", "<pad>"])
    with pytest.raises(ValueError, match="duplicate"):
        CaptionTokenizer(["red", "red"])
    with pytest.raises(ValueError, match="whitespace"):
        CaptionTokenizer(["red circle"])
    with pytest.raises(TypeError, match=r"vocabulary\[0\]"):
        CaptionTokenizer([7])
    with pytest.raises(ValueError, match="context_length=1"):
        CaptionTokenizer(["red"], context_length=1)


def test_non_string_input_errors(tokenizer):
    with pytest.raises(TypeError, match="string"):
        tokenizer(tf.constant([1, 2]))
    with pytest.raises(TypeError, match="index 1"):
        tokenizer(["red", 5])


def test_detokenize(tokenizer):
    ids = tokenizer(["A red circle!", "", "a green square"])
    assert tokenizer.detokenize(ids) == ["a red circle", "", "a square"]
    assert tokenizer.detokenize(ids[0]) == ["a red circle"]
    assert tokenizer.detokenize(tf.constant(ids)) == tokenizer.detokenize(ids)
    assert tokenizer.detokenize(keras.ops.convert_to_tensor(ids))[0] == "a red circle"


def test_save_load_round_trip(tokenizer, tmp_path):
    path = str(tmp_path / "tok")
    tokenizer.save(path)
    lines = open(os.path.join(path, "vocabulary.txt"), encoding="utf-8").read().split("\n")
    assert lines[:5] == ["<pad>", "<unk>", "<start>", "<end>", "a"]
    assert os.path.isfile(os.path.join(path, "tokenizer.json"))
    restored = CaptionTokenizer.load(path)
    assert restored.get_vocabulary() == tokenizer.get_vocabulary()
    assert restored.context_length == tokenizer.context_length
    captions = ["a red circle", "left of a blue square", "unknown"]
    np.testing.assert_array_equal(restored(captions), tokenizer(captions))


def test_load_missing_directory(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="nope"):
        CaptionTokenizer.load(missing)


def test_config_round_trip(tokenizer):
    config = tokenizer.get_config()
    for key in ("vocabulary", "context_length", "lowercase", "split_punctuation", "name"):
        assert key in config
    clone = CaptionTokenizer.from_config(config)
    assert clone.get_vocabulary() == tokenizer.get_vocabulary()
    np.testing.assert_array_equal(clone("a red circle"), tokenizer("a red circle"))

    serialized = keras.saving.serialize_keras_object(tokenizer)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(revived, CaptionTokenizer)
    np.testing.assert_array_equal(revived("blue square"), tokenizer("blue square"))


@keras.saving.register_keras_serializable(package="keras_clip_tests")
class TextModelWithTokenizer(keras.Model):
    """Holds a tokenizer and embeds its ids (works on every backend)."""

    def __init__(self, tokenizer, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.embedding = keras.layers.Embedding(tokenizer.vocabulary_size, 4)

    def call(self, token_ids):
        return keras.ops.mean(self.embedding(token_ids), axis=1)

    def get_config(self):
        config = super().get_config()
        config["tokenizer"] = keras.saving.serialize_keras_object(self.tokenizer)
        return config

    @classmethod
    def from_config(cls, config):
        config["tokenizer"] = keras.saving.deserialize_keras_object(
            config["tokenizer"]
        )
        return cls(**config)


def test_inside_keras_file(tokenizer, tmp_path):
    model = TextModelWithTokenizer(tokenizer)
    ids = tokenizer(["a red circle", "blue square"])
    expected = keras.ops.convert_to_numpy(model(ids))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.tokenizer, CaptionTokenizer)
    assert loaded.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()
    new_ids = loaded.tokenizer(["a red circle", "blue square"])
    np.testing.assert_array_equal(new_ids, ids)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(new_ids)), expected, rtol=1e-6
    )


def test_symbolic_call_in_functional_model(tokenizer):
    strings = keras.Input(shape=(), dtype="string")
    ids = tokenizer(strings)
    assert tuple(ids.shape) == (None, 8)
    assert ids.dtype == "int32"
